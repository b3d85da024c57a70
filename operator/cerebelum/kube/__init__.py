"""The imperative shell: the only code that talks to the Kubernetes API."""
