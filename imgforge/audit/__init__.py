"""Audits: one site repo (``audit_repo``) or image (``audit_image``), its catalog entry
(``migrate_repo``), the fleet (``fleet_report``)."""

from imgforge.audit.findings import RULES, Finding, has_errors, summary
from imgforge.audit.fleet import FleetReport, fleet_report, to_markdown
from imgforge.audit.image import ImageAudit, audit_image
from imgforge.audit.image_source import open_image
from imgforge.audit.migrate import migrate_repo, write_site
from imgforge.audit.site import audit_repo
from imgforge.errors import AuditUnreadable

__all__ = [
    "RULES",
    "AuditUnreadable",
    "Finding",
    "FleetReport",
    "ImageAudit",
    "audit_image",
    "audit_repo",
    "fleet_report",
    "has_errors",
    "migrate_repo",
    "open_image",
    "summary",
    "to_markdown",
    "write_site",
]
