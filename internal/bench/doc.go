// Package bench measures overlay the way its users compare overlays: each
// measurement is a row of one table, taken on simulated hosts (network
// namespaces) of this machine, interleaved with the reference it is compared
// against so the machine's noise hits both alike. hack/bench wires it into
// `make bench`.
package bench
