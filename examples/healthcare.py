"""Healthcare: onboard a patient. Register them, check their insurance (retried while
the insurer times out), file their consent, book an appointment, then after a durable
sleep send a reminder. A rejected insurance or a cancellation undoes what was done.

    python examples/healthcare.py register ["Jane Roe"] [--born 1984-03-02]
        [--policy INS-1234] [--department cardiology] [--reminder-delay 1]
    python examples/healthcare.py cancel ["Jane Roe"] [--born 1984-03-02]

Both take [--state DIR] [--db FILE]. ``cancel`` is what the front desk runs when the
patient calls off the onboarding while it waits to send the reminder.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from fake_services.clinic import Appointment, Clinic, Coverage

import durably


@dataclass(frozen=True)
class Patient:
    full_name: str
    born: date
    phone: str
    policy: str
    department: str


class InsuranceRejected(RuntimeError):
    """The insurer does not cover the visit."""


def build_app(database: Path, clinic: Clinic, *, reminder_delay: timedelta) -> durably.Durably:
    """The onboarding workflow, its steps and their compensations, on ``database``."""
    # Cancellations come from other processes: look for them every 0.2 s (default 1 s).
    app = durably.Durably(f"sqlite:///{database}", poll_interval=timedelta(milliseconds=200))

    def idempotency_key() -> str:
        return durably.current_step().idempotency_key

    async def archive(patient_id: str) -> None:
        clinic.patients.archive(patient_id)

    @app.step(compensate=archive)
    async def register(patient: Patient) -> str:
        born = patient.born.isoformat()
        return clinic.patients.register(patient.full_name, born, idempotency_key=idempotency_key())

    @app.step(retry=durably.RetryPolicy.exponential(5, initial_delay=0.1, max_delay=10))
    async def check_insurance(patient: Patient) -> Coverage:
        key = idempotency_key()
        return clinic.insurer.check(patient.policy, patient.department, idempotency_key=key)

    async def withdraw(consent_id: str) -> None:
        clinic.consents.withdraw(consent_id)

    @app.step(compensate=withdraw)
    async def record_consent(patient_id: str) -> str:
        key = idempotency_key()
        return clinic.consents.record(patient_id, "treatment-consent-v3", idempotency_key=key)

    async def cancel_appointment(appointment: Appointment) -> None:
        clinic.scheduler.cancel(appointment.appointment_id)

    @app.step(compensate=cancel_appointment)
    async def book(patient_id: str, department: str) -> Appointment:
        return clinic.scheduler.book(patient_id, department, idempotency_key=idempotency_key())

    @app.step()
    async def send_reminder(patient: Patient, appointment: Appointment) -> None:
        text = f"Reminder: {appointment.department}, {appointment.slot}. Reply C to cancel."
        clinic.sms.send(patient.phone, text, idempotency_key=idempotency_key())

    @app.workflow(name="patient_onboarding")
    async def onboard(ctx: durably.Context, patient: Patient) -> Appointment:
        patient_id = await register(patient)
        coverage = await check_insurance(patient)
        if not coverage.eligible:
            raise InsuranceRejected(f"{patient.policy}: {coverage.detail}")
        await record_consent(patient_id)
        appointment = await book(patient_id, patient.department)
        # A long sleep holds no memory: the workflow is unloaded and a timer resumes it,
        # in this process or in the next one if this one is stopped.
        await ctx.sleep("until_reminder", reminder_delay)
        await send_reminder(patient, appointment)
        return appointment

    return app


async def register(app: durably.Durably, workflow_id: str, patient: Patient) -> int:
    """Run (or resume) the onboarding of ``patient``; return the exit status."""
    async with app:
        try:
            status = (await app.get_workflow(workflow_id)).status
            print(f"{workflow_id}: found {status} in the workflow database")
        except durably.WorkflowNotFoundError:
            print(f"{workflow_id}: new")
        handle: durably.WorkflowHandle[Appointment] = await app.start(
            "patient_onboarding", patient, workflow_id=workflow_id
        )
        try:
            appointment = await handle.result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {appointment}")
    return 0


async def cancel(database: Path, workflow_id: str) -> int:
    """Cancel an onboarding, undoing its steps; the process running it does the work."""
    async with durably.Durably(f"sqlite:///{database}", worker=False) as client:
        try:
            status = await client.cancel(workflow_id, compensate=True)
        except (durably.WorkflowNotFoundError, durably.WorkflowFinishedError) as error:
            print(f"cannot cancel: {error}")
            return 1
    print(f"{workflow_id}: cancellation requested (it was {status})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; onboard a patient or cancel their onboarding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["register", "cancel"])
    parser.add_argument("name", nargs="?", default="Jane Roe")
    parser.add_argument("--born", type=date.fromisoformat, default=date(1984, 3, 2))
    parser.add_argument("--phone", default="+1-555-0100")
    parser.add_argument("--policy", default="INS-1234", help="EXP-... policies have expired")
    parser.add_argument("--department", default="cardiology")
    parser.add_argument("--reminder-delay", type=float, default=1.0, help="seconds")
    parser.add_argument("--insurer-timeouts", type=int, default=2)
    parser.add_argument(
        "--state",
        type=Path,
        default=Path(tempfile.gettempdir()) / "durably-examples" / "healthcare",
    )
    parser.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    args = parser.parse_args(argv)
    database = args.db or args.state / "workflows.db"
    workflow_id = f"onboarding-{args.name.lower().replace(' ', '-')}-{args.born}"
    if args.command == "cancel":
        return asyncio.run(cancel(database, workflow_id))
    patient = Patient(args.name, args.born, args.phone, args.policy, args.department)
    clinic = Clinic(args.state, insurer_timeouts=args.insurer_timeouts)
    app = build_app(database, clinic, reminder_delay=timedelta(seconds=args.reminder_delay))
    return asyncio.run(register(app, workflow_id, patient))


if __name__ == "__main__":
    sys.exit(main())
