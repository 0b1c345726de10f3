"""A device reached over a local link (BLE) and a cloud registry of devices ("things")."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fake_services.base import FakeService, Json


@dataclass(frozen=True)
class Registration:
    thing_id: str
    device_id: str


class DeviceLink(FakeService):
    """The devices within reach; a busy device drops the first requests it gets."""

    name = "devices"

    def initial_state(self) -> Json:
        return {"devices": {}}

    def connect(self, device_id: str, *, idempotency_key: str) -> None:
        """Pair with the device."""

        def apply(state: Json) -> tuple[Json, str]:
            state["devices"][device_id] = {"paired": True, "wifi": None}
            return {}, f"paired with {device_id}"

        self.request("connect", idempotency_key, apply)

    def send_credentials(self, device_id: str, ssid: str, *, idempotency_key: str) -> None:
        """Give the device the Wi-Fi network to join."""

        def apply(state: Json) -> tuple[Json, str]:
            state["devices"][device_id]["wifi"] = ssid
            return {}, f"{device_id} joined Wi-Fi {ssid!r}"

        self.request("send_credentials", idempotency_key, apply)


class CloudRegistry(FakeService):
    """The cloud side: registered things, their certificates and firmware."""

    name = "cloud"

    def initial_state(self) -> Json:
        return {"things": {}}

    def register(self, device_id: str, *, idempotency_key: str) -> Registration:
        """Create the device's thing (and its certificate)."""

        def apply(state: Json) -> tuple[Json, str]:
            registration = Registration(f"thing-{len(state['things']) + 1}", device_id)
            state["things"][registration.thing_id] = {"device": device_id, "status": "registered"}
            return asdict(registration), f"registered {device_id} as {registration.thing_id}"

        return Registration(**self.request("register", idempotency_key, apply))

    def activate(self, thing_id: str, firmware: str, *, idempotency_key: str) -> None:
        """Mark the thing live, running ``firmware``."""

        def apply(state: Json) -> tuple[Json, str]:
            state["things"][thing_id] |= {"status": "active", "firmware": firmware}
            return {}, f"{thing_id} active on firmware {firmware}"

        self.request("activate", idempotency_key, apply)

    def unregister(self, thing_id: str) -> None:
        """Delete the thing and revoke its certificate."""

        def apply(state: Json) -> tuple[Json, str]:
            state["things"][thing_id]["status"] = "unregistered"
            return {}, f"unregistered {thing_id}, certificate revoked"

        self.request("unregister", f"unregister:{thing_id}", apply)


class DeviceFleet:
    """The link and the registry, on one state directory."""

    def __init__(self, state_dir: Path, *, busy_device_drops: int = 0) -> None:
        self.link = DeviceLink(state_dir, timeouts={"send_credentials": busy_device_drops})
        self.cloud = CloudRegistry(state_dir)
