"""warden's Drift sidecar: the sidecar protocol v1 served with driftpy (see docs/reference)."""
