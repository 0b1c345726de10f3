"""Fake external services for the examples: a shop, a storage bucket, a device cloud,
a bank, a message broker, a clinic.

They stand in for the remote APIs a real workflow talks to, and behave as a careful
provider does: state survives the process (a JSON file per service in the state
directory, replaced atomically after every request), and every request that changes
something carries an idempotency key, so a request repeated after a crash is answered
with the original response instead of being applied twice. None of them imports
durably: your real services would not either.

See :mod:`fake_services.base` for the mechanics (and the pause point used by the
crash tests).
"""
