"""`mendnet audit`: clean accuracy, backdoor detection, adversarial robustness, attention maps of
suspicious inputs and advice for one model, as report.html (self-contained), report.md and audit.json.
The model a user brings is loaded by `mendnet.jobs.load.load_model`."""

from mendnet.audit.run import AuditConfig, AuditOutcome, audit_model

__all__ = ["AuditConfig", "AuditOutcome", "audit_model"]
