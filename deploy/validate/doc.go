// Package validate checks the deployment examples under deploy/ offline:
// every Kubernetes manifest is decoded strictly into the typed objects of
// k8s.io/api (an unknown or misspelt field, a wrong type or a duplicate
// key fails), the objects are checked against each other (selectors,
// ports, volumes, the service account) and against what ecr-proxy needs
// (probes on /healthz, non-root, the cache volume, the seed variables),
// and the EC2 example's IAM policy is checked for the actions the proxy
// uses.
//
// It is a module of its own so that the Kubernetes API packages stay out
// of ecr-proxy's dependencies. Run it from the repository root with
//
//	(cd deploy/validate && go test ./...)
//
// kubeconform (go install github.com/yannh/kubeconform/cmd/kubeconform)
// validates against OpenAPI-derived JSON schemas, but downloads them from
// GitHub at run time; where that is reachable it is a useful second check:
//
//	kubeconform -strict -summary -skip Kustomization deploy/kubernetes
package validate
