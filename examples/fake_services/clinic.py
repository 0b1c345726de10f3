"""A clinic's systems: patient records, an insurer, consent forms, the appointment book
and an SMS gateway."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fake_services.base import FakeService, Json


@dataclass(frozen=True)
class Coverage:
    eligible: bool
    detail: str


@dataclass(frozen=True)
class Appointment:
    appointment_id: str
    department: str
    slot: str


class Patients(FakeService):
    name = "patients"

    def initial_state(self) -> Json:
        return {"records": {}}

    def register(self, full_name: str, born: str, *, idempotency_key: str) -> str:
        """Create a patient record; returns its id."""

        def apply(state: Json) -> tuple[Json, str]:
            patient_id = f"P-{len(state['records']) + 1}"
            state["records"][patient_id] = {"name": full_name, "born": born, "status": "active"}
            return {"patient_id": patient_id}, f"registered {full_name} as {patient_id}"

        patient_id: str = self.request("register", idempotency_key, apply)["patient_id"]
        return patient_id

    def archive(self, patient_id: str) -> None:
        """Withdraw a record that must not stay active."""

        def apply(state: Json) -> tuple[Json, str]:
            state["records"][patient_id]["status"] = "archived"
            return {}, f"archived record {patient_id}"

        self.request("archive", f"archive:{patient_id}", apply)


class Insurer(FakeService):
    """Eligibility checks; policies numbered ``EXP-...`` have expired."""

    name = "insurer"

    def initial_state(self) -> Json:
        return {"checks": {}}

    def check(self, policy: str, department: str, *, idempotency_key: str) -> Coverage:
        """Whether ``policy`` covers a visit to ``department``."""

        def apply(state: Json) -> tuple[Json, str]:
            expired = policy.startswith("EXP-")
            coverage = Coverage(
                not expired, "policy expired" if expired else f"{department} covered"
            )
            state["checks"][policy] = coverage.detail
            return asdict(coverage), f"policy {policy}: {coverage.detail}"

        return Coverage(**self.request("check", idempotency_key, apply))


class Consents(FakeService):
    name = "consents"

    def initial_state(self) -> Json:
        return {"forms": {}}

    def record(self, patient_id: str, form: str, *, idempotency_key: str) -> str:
        """File a signed consent form; returns its id."""

        def apply(state: Json) -> tuple[Json, str]:
            consent_id = f"C-{len(state['forms']) + 1}"
            state["forms"][consent_id] = {"patient": patient_id, "form": form, "status": "signed"}
            return {"consent_id": consent_id}, f"{patient_id} signed {form} ({consent_id})"

        consent_id: str = self.request("record", idempotency_key, apply)["consent_id"]
        return consent_id

    def withdraw(self, consent_id: str) -> None:
        """Mark a consent withdrawn."""

        def apply(state: Json) -> tuple[Json, str]:
            state["forms"][consent_id]["status"] = "withdrawn"
            return {}, f"withdrew consent {consent_id}"

        self.request("withdraw", f"withdraw:{consent_id}", apply)


class Scheduler(FakeService):
    name = "scheduler"

    def initial_state(self) -> Json:
        return {"appointments": {}}

    def book(self, patient_id: str, department: str, *, idempotency_key: str) -> Appointment:
        """Book the department's next free slot."""

        def apply(state: Json) -> tuple[Json, str]:
            number = len(state["appointments"]) + 1
            booked = Appointment(f"A-{number}", department, f"2026-03-{number + 1:02d} 09:30")
            state["appointments"][booked.appointment_id] = {
                "patient": patient_id,
                "status": "booked",
            }
            return asdict(booked), f"booked {booked.appointment_id}: {department}, {booked.slot}"

        return Appointment(**self.request("book", idempotency_key, apply))

    def cancel(self, appointment_id: str) -> None:
        """Free a booked slot."""

        def apply(state: Json) -> tuple[Json, str]:
            state["appointments"][appointment_id]["status"] = "cancelled"
            return {}, f"cancelled {appointment_id}, slot freed"

        self.request("cancel", f"cancel:{appointment_id}", apply)


class Sms(FakeService):
    name = "sms"

    def initial_state(self) -> Json:
        return {"sent": []}

    def send(self, phone: str, text: str, *, idempotency_key: str) -> None:
        """Send a text message."""

        def apply(state: Json) -> tuple[Json, str]:
            state["sent"].append({"to": phone, "text": text})
            return {}, f"to {phone}: {text!r}"

        self.request("send", idempotency_key, apply)


class Clinic:
    """All of the clinic's systems, on one state directory."""

    def __init__(self, state_dir: Path, *, insurer_timeouts: int = 0) -> None:
        self.patients = Patients(state_dir)
        self.insurer = Insurer(state_dir, timeouts={"check": insurer_timeouts})
        self.consents = Consents(state_dir)
        self.scheduler = Scheduler(state_dir)
        self.sms = Sms(state_dir)
