// Package archtest holds tests that keep the project's package boundaries
// (DESIGN.md "Parts and where they live"): one package owns rtnetlink and
// ethtool, one etcd, one iptables, one nftables. It has no code of its own.
package archtest
