"""Case files: the documents of a call, their tracked states and their audit trail (sans-I/O).

``CaseFile`` (in ``machine``) holds a case's documents and device commands; its methods
are the transitions and return the audit rows they add. Stores keep case files with a
compare-and-set on their version; ``update`` is the load, change, save loop over them.
"""

from .errors import CaseError
from .machine import DOCUMENT_MOVES, SYSTEM, CaseFile
from .model import (
    PRINTABLE,
    SHARE_CODE_ALPHABET,
    AuditRow,
    CommandKind,
    CommandState,
    DeviceCommand,
    Document,
    DocumentState,
    Origin,
    Share,
    case_id_for,
    new_document_id,
    new_share_code,
)
from .store import CaseConflict, CaseStore, update

__all__ = [
    "DOCUMENT_MOVES",
    "PRINTABLE",
    "SHARE_CODE_ALPHABET",
    "SYSTEM",
    "AuditRow",
    "CaseConflict",
    "CaseError",
    "CaseFile",
    "CaseStore",
    "CommandKind",
    "CommandState",
    "DeviceCommand",
    "Document",
    "DocumentState",
    "Origin",
    "Share",
    "case_id_for",
    "new_document_id",
    "new_share_code",
    "update",
]
