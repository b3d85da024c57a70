module github.com/cerebelum-io/cerebelum-operator/hack/tools/pause

// The pod sandbox's "pause" process for the local node (registry.k8s.io cannot be reached
// here): holds the pod's namespaces, reaps zombies, exits on SIGTERM or SIGINT.

go 1.26.0
