"""The store contract, one module per part of the ``Store`` protocol.

``durably.testing.store_contract.StoreContract`` combines them; import it from there.
"""

from __future__ import annotations
