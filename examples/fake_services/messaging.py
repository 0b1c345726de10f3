"""A phone's outbox of messages written while offline, and the chat server's broker."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fake_services.base import FakeService, Json


@dataclass(frozen=True)
class Message:
    message_id: str  # made by the phone when the message is written: the broker dedups on it
    recipient: str
    text: str


class Outbox(FakeService):
    """The local queue of the messaging app (on the phone, not remote)."""

    name = "outbox"

    def initial_state(self) -> Json:
        return {"messages": {}}

    def queue(self, recipient: str, text: str) -> Message:
        """Keep a message until it can be sent."""

        def apply(state: Json) -> tuple[Json, str]:
            message = Message(f"m-{len(state['messages']) + 1}", recipient, text)
            state["messages"][message.message_id] = asdict(message) | {"status": "queued"}
            return asdict(message), f"queued {message.message_id} to {recipient}: {text!r}"

        return Message(**self.request("queue", None, apply))

    def pending(self) -> list[str]:
        """Ids of the messages not delivered yet, oldest first."""
        messages = self.state["messages"]
        return [key for key, message in messages.items() if message["status"] == "queued"]

    def message(self, message_id: str) -> Message:
        """One message of the outbox."""
        fields = dict(self.state["messages"][message_id])
        del fields["status"]
        return Message(**fields)

    def mark_delivered(self, message_id: str, sequence: int) -> None:
        """Show the message as delivered (two ticks), with its place in the chat."""

        def apply(state: Json) -> tuple[Json, str]:
            state["messages"][message_id] |= {"status": "delivered", "sequence": sequence}
            return {}, f"{message_id} delivered ✓✓"

        self.request("mark_delivered", f"delivered:{message_id}", apply)


class Broker(FakeService):
    """The chat server: appends each message once to the recipient's inbox."""

    name = "broker"

    def initial_state(self) -> Json:
        return {"inboxes": {}}

    def publish(self, message: Message, *, idempotency_key: str) -> int:
        """Deliver ``message``; returns its sequence number in the recipient's inbox."""

        def apply(state: Json) -> tuple[Json, str]:
            inbox = state["inboxes"].setdefault(message.recipient, [])
            inbox.append({"message_id": message.message_id, "text": message.text})
            return {"sequence": len(inbox)}, f"{message.recipient} received {message.message_id}"

        sequence: int = self.request("publish", idempotency_key, apply)["sequence"]
        return sequence
