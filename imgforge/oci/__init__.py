"""The daemonless builder: a site's image assembled from a prebuilt nginx base without a Docker engine.

``assemble`` builds the OCI layout (deterministic layers, config, manifest or index), ``base`` pins
and copies the base, ``transfer`` pushes the layout with imgforge's registry client, loads it into
an engine for ``imgforge test`` and runs ``nginx -t``. Only the ``prebuilt`` profile can use it: the
``alpine`` and ``debian`` profiles install nginx with a package manager, which needs a running
container (see README, builders).
"""

from __future__ import annotations

from imgforge.oci.assemble import BaseLookup, OciBuildResult, build_site_oci
from imgforge.oci.transfer import PushReport, config_test, load, push

__all__ = ["BaseLookup", "OciBuildResult", "PushReport", "build_site_oci", "config_test", "load", "push"]
