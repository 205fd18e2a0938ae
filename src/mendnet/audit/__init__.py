"""`mendnet audit`: clean accuracy, backdoor detection, adversarial robustness, attention maps of
suspicious inputs and advice for one model, as report.html (self-contained), report.md and audit.json."""

from mendnet.audit.load import load_audit_model
from mendnet.audit.run import AuditConfig, AuditOutcome, audit_model

__all__ = ["AuditConfig", "AuditOutcome", "audit_model", "load_audit_model"]
