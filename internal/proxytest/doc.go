// Package proxytest builds the ecr-proxy binary and runs it as a child
// process, for end-to-end tests, the demo and the benchmarks. The child
// gets only the environment it is given (plus PATH), so no AWS_* variable
// of the caller leaks into it.
package proxytest
