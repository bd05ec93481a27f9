from warden_drift_sidecar.server import run

run()
