"""IoT device provisioning: pair with the device, give it Wi-Fi credentials (retried
while it is busy), register it in the cloud, then wait for the device to report its
firmware update, a typed signal sent by another process, with a durable timeout.

    python examples/iot_provisioning.py provision DEVICE [--firmware 2.4.1] [--timeout 30]
    python examples/iot_provisioning.py report DEVICE --version 2.4.1 [--failed]

Both take [--state DIR] [--db FILE]; ``report`` is what the device's update service
runs: it only sends a signal to the workflow in the shared database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fake_services.devices import DeviceFleet, Registration

import durably


@dataclass(frozen=True)
class Device:
    device_id: str
    wifi_ssid: str
    firmware: str  # the version the device must end up running


@dataclass(frozen=True)
class FirmwareReport:
    version: str
    succeeded: bool


@dataclass(frozen=True)
class Provisioned:
    device_id: str
    thing_id: str
    firmware: str


class FirmwareUpdateFailed(RuntimeError):
    """The device did not report the expected firmware in time."""


SIGNAL = "firmware_update_complete"


def build_app(database: Path, fleet: DeviceFleet, *, timeout: timedelta) -> durably.Durably:
    """The provisioning workflow and its steps, on ``database``."""
    # Signals come from other processes: look for them every 0.2 s (the default is 1 s).
    app = durably.Durably(f"sqlite:///{database}", poll_interval=timedelta(milliseconds=200))

    def idempotency_key() -> str:
        return durably.current_step().idempotency_key

    @app.step(retry=durably.RetryPolicy.exponential(5, initial_delay=0.1, max_delay=2))
    async def connect(device: Device) -> None:
        fleet.link.connect(device.device_id, idempotency_key=idempotency_key())

    @app.step(retry=durably.RetryPolicy.fixed(4, delay=0.2))
    async def send_credentials(device: Device) -> None:
        key = idempotency_key()
        fleet.link.send_credentials(device.device_id, device.wifi_ssid, idempotency_key=key)

    async def unregister(registration: Registration) -> None:
        fleet.cloud.unregister(registration.thing_id)

    @app.step(compensate=unregister)
    async def register(device: Device) -> Registration:
        return fleet.cloud.register(device.device_id, idempotency_key=idempotency_key())

    @app.step()
    async def activate(registration: Registration, firmware: str) -> None:
        fleet.cloud.activate(registration.thing_id, firmware, idempotency_key=idempotency_key())

    @app.workflow(name="provision")
    async def provision(ctx: durably.Context, device: Device) -> Provisioned:
        await connect(device)
        await send_credentials(device)
        registration = await register(device)
        if not ctx.is_replaying:  # print once, not at every replay
            print(f"{device.device_id}: waiting for {SIGNAL} (timeout {timeout})", flush=True)
        report = await ctx.wait_signal(SIGNAL, timeout=timeout, payload_type=FirmwareReport)
        if report is None:
            raise FirmwareUpdateFailed(f"no firmware report from {device.device_id} in {timeout}")
        if not report.succeeded or report.version != device.firmware:
            raise FirmwareUpdateFailed(f"{device.device_id} reported {report}")
        await activate(registration, report.version)
        return Provisioned(device.device_id, registration.thing_id, report.version)

    return app


async def provision(app: durably.Durably, device: Device) -> int:
    """Run (or resume) the provisioning of ``device``; return the exit status."""
    workflow_id = f"provision-{device.device_id}"
    async with app:
        try:
            status = (await app.get_workflow(workflow_id)).status
            print(f"{workflow_id}: found {status} in the workflow database")
        except durably.WorkflowNotFoundError:
            print(f"{workflow_id}: new")
        handle: durably.WorkflowHandle[Provisioned] = await app.start(
            "provision", device, workflow_id=workflow_id
        )
        try:
            provisioned = await handle.result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {provisioned}")
    return 0


async def report(database: Path, device_id: str, firmware: FirmwareReport) -> int:
    """Send the device's firmware report to its provisioning workflow."""
    async with durably.Durably(f"sqlite:///{database}", worker=False) as app:  # a client only
        try:  # the same report delivered twice (devices retry) is applied once
            sent = await app.send_signal(
                f"provision-{device_id}",
                SIGNAL,
                firmware,
                dedup_key=f"{device_id}@{firmware.version}",
            )
        except (durably.WorkflowNotFoundError, durably.WorkflowFinishedError) as error:
            print(f"cannot report: {error}")
            return 1
    print(f"{device_id}: {'sent' if sent else 'already sent'} {SIGNAL} {firmware}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; provision a device or send its firmware report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["provision", "report"])
    parser.add_argument("device")
    parser.add_argument("--ssid", default="greenhouse-wifi")
    parser.add_argument("--firmware", default="2.4.1", help="version the device must reach")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it")
    parser.add_argument("--version", help="report: the version the device now runs")
    parser.add_argument("--failed", action="store_true", help="report: the update failed")
    parser.add_argument("--busy-drops", type=int, default=1, help="credential sends dropped")
    parser.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "durably-examples" / "iot"
    )
    parser.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    args = parser.parse_args(argv)
    database = args.db or args.state / "workflows.db"
    if args.command == "report":
        if not args.version:
            parser.error("report needs --version")
        firmware = FirmwareReport(args.version, succeeded=not args.failed)
        return asyncio.run(report(database, args.device, firmware))
    fleet = DeviceFleet(args.state, busy_device_drops=args.busy_drops)
    app = build_app(database, fleet, timeout=timedelta(seconds=args.timeout))
    return asyncio.run(provision(app, Device(args.device, args.ssid, args.firmware)))


if __name__ == "__main__":
    sys.exit(main())
