"""gitops: an event-sourced GitOps state store and reconciler for Kubernetes."""

__version__ = "0.1.0"
