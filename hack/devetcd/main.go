// Command devetcd runs a single-member embedded etcd for the demo and local
// experiments. It is not for production: fsync is off and there is one member.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	clientURL := flag.String("listen-client", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	peerURL := flag.String("listen-peer", "http://127.0.0.1:2380", "peer URL to listen on")
	logLevel := flag.String("log-level", "error", "etcd log level")
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "devetcd: --data-dir is required")
		os.Exit(2)
	}
	s, err := etcdtest.Start(etcdtest.Options{DataDir: *dataDir, ClientURL: *clientURL, PeerURL: *peerURL, LogLevel: *logLevel})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devetcd:", err)
		os.Exit(1)
	}
	fmt.Printf("devetcd: ready on %s\n", *clientURL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-s.Err():
		fmt.Fprintln(os.Stderr, "devetcd:", err)
		s.Close()
		os.Exit(1)
	}
	s.Close()
}
