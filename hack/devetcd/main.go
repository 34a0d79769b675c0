// Command devetcd runs an embedded etcd member for the demo, the end-to-end
// tests and local experiments. It is not for production: fsync is off.
//
// By default it is a single-member cluster. With --name and
// --initial-cluster several devetcd processes form one cluster (every one
// given the same list); each serves once a majority runs. With --cert-file
// and --key-file its client URL serves HTTPS, and with --trusted-ca-file and
// --client-cert-auth it requires client certificates.
//
// It prints, on stdout:
//
//	devetcd: ready on URL            once it serves clients
//	devetcd: member NAME id HEX (DECIMAL)
//	                                 right after; /v3/maintenance/status
//	                                 gives member_id and leader in decimal
//	devetcd: leader is NAME          whenever the leader it knows changes
//	devetcd: no leader               while it knows of none
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	clientURL := flag.String("listen-client", "http://127.0.0.1:2379", "client URL to listen on and advertise (https:// with --cert-file and --key-file)")
	peerURL := flag.String("listen-peer", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	logLevel := flag.String("log-level", "error", "etcd log level")
	name := flag.String("name", etcdtest.DefaultName, "member name")
	initialCluster := flag.String("initial-cluster", "", "every member of a new cluster as name=peerURL,name=peerURL,… (the same on every member); empty: a single-member cluster of this member")
	certFile := flag.String("cert-file", "", "server certificate for the client URL (PEM)")
	keyFile := flag.String("key-file", "", "server key for the client URL (PEM)")
	trustedCAFile := flag.String("trusted-ca-file", "", "CA that client certificates must be signed by (PEM)")
	clientCertAuth := flag.Bool("client-cert-auth", false, "require client certificates signed by --trusted-ca-file")
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "devetcd: --data-dir is required")
		os.Exit(2)
	}
	s, err := etcdtest.Start(etcdtest.Options{
		DataDir: *dataDir, ClientURL: *clientURL, PeerURL: *peerURL, LogLevel: *logLevel,
		Name: *name, InitialCluster: *initialCluster,
		CertFile: *certFile, KeyFile: *keyFile, TrustedCAFile: *trustedCAFile, ClientCertAuth: *clientCertAuth,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devetcd:", err)
		os.Exit(1)
	}
	fmt.Printf("devetcd: ready on %s\n", *clientURL)
	fmt.Printf("devetcd: member %s id %x (%d)\n", s.Name(), s.ID(), s.ID())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		reportLeader(s, stop)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	code := 0
	select {
	case <-sig:
	case err := <-s.Err():
		fmt.Fprintln(os.Stderr, "devetcd:", err)
		code = 1
	}
	close(stop)
	<-done
	s.Close()
	os.Exit(code)
}

// reportLeader prints the leader this member knows whenever it changes.
func reportLeader(s *etcdtest.Server, stop <-chan struct{}) {
	last := "\x00" // matches nothing, so the first state is printed
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if lead := s.LeaderName(); lead != last {
			if lead == "" {
				fmt.Println("devetcd: no leader")
			} else {
				fmt.Printf("devetcd: leader is %s\n", lead)
			}
			last = lead
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
