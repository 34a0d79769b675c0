// Package subnet is overlay's control plane in etcd, and the only package that
// imports the etcd client. It owns the key layout (keys.go), the lease records
// (record.go), network config storage, subnet acquisition, keeping a host's
// lease alive, and watching every host's lease.
//
// Life of a lease: a host grants one etcd lease (TTL), binds its subnet key to
// it with a transaction that creates the key only if absent, and keeps it
// alive. If the host dies the etcd lease expires and the key vanishes, which
// every other host sees in its watch. A host that restarts finds its previous
// key by its stable host ID (or its remembered subnet) and rebinds it to a new
// etcd lease, so its running containers keep their addresses.
//
// Watching: list (noting the revision), then watch from revision+1; on
// compaction or any watch failure, list again and hand over a full snapshot.
// Consumers only ever receive whole snapshots, never raw events, so they can
// reconcile level-triggered.
package subnet
