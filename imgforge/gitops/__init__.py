"""The GitOps manager: read a Flux/kustomize repo and change what deploys a site, proven by rendering.

A library: it knows file formats (kustomizations, patches, YAML) and ``kubectl kustomize``, never
a registry, a forge or a test record. :mod:`.plan` works out and applies the change, :mod:`.locate`
finds where the Deployment is shaped, :mod:`.patch` edits YAML text minimally, :mod:`.policy`
says what Pod Security settings a level wants, :mod:`.kustomize` renders, :mod:`.branch` commits
and pushes a bot branch.
"""

from imgforge.gitops.plan import (
    LEVELS,
    FileChange,
    GitopsPlan,
    apply,
    current_tag,
    current_tags,
    plan,
    plan_many,
)

__all__ = ["LEVELS", "FileChange", "GitopsPlan", "apply", "current_tag", "current_tags", "plan", "plan_many"]
