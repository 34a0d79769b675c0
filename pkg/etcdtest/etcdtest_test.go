package etcdtest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gateway calls etcd's JSON gateway (the same endpoints `curl -X POST
// URL/v3/...` reaches) and decodes the answer into out.
func gateway(t *testing.T, hc *http.Client, clientURL, path string, in, out any) error {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(clientURL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func put(t *testing.T, hc *http.Client, clientURL, key, value string) error {
	t.Helper()
	var out struct{}
	return gateway(t, hc, clientURL, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64(value)}, &out)
}

func get(t *testing.T, hc *http.Client, clientURL, key string) (string, error) {
	t.Helper()
	var out struct {
		Kvs []struct{ Value string } `json:"kvs"`
	}
	if err := gateway(t, hc, clientURL, "/v3/kv/range", map[string]string{"key": b64(key)}, &out); err != nil {
		return "", err
	}
	if len(out.Kvs) == 0 {
		return "", fmt.Errorf("%s: not found", key)
	}
	v, err := base64.StdEncoding.DecodeString(out.Kvs[0].Value)
	return string(v), err
}

// memberStatus is what POST URL/v3/maintenance/status says: the answering
// member's ID and the leader's, as decimal strings.
func memberStatus(t *testing.T, clientURL string) (member, leader uint64, err error) {
	t.Helper()
	var out struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	if err := gateway(t, http.DefaultClient, clientURL, "/v3/maintenance/status", struct{}{}, &out); err != nil {
		return 0, 0, err
	}
	if member, err = strconv.ParseUint(out.Header.MemberID, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("member_id %q: %w", out.Header.MemberID, err)
	}
	if leader, err = strconv.ParseUint(out.Leader, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("leader %q: %w", out.Leader, err)
	}
	return member, leader, nil
}

func TestSingleMemberDefaults(t *testing.T) {
	s := New(t)
	if s.Name() != DefaultName || !strings.HasPrefix(s.ClientURL(), "http://127.0.0.1:") {
		t.Fatalf("name %q, client URL %q", s.Name(), s.ClientURL())
	}
	if !s.IsLeader() || s.LeaderName() != DefaultName {
		t.Fatalf("a single member leads itself: IsLeader %v, LeaderName %q", s.IsLeader(), s.LeaderName())
	}
	if err := put(t, http.DefaultClient, s.ClientURL(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close() // again: no-op
	s.Kill()  // after Close: no-op
	if !s.Stopped() || s.LeaderID() != 0 {
		t.Fatalf("after Close: Stopped %v, LeaderID %d", s.Stopped(), s.LeaderID())
	}
}

func TestOptionsErrors(t *testing.T) {
	certs := NewCerts(t)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "DataDir is required"},
		{Options{DataDir: t.TempDir(), CertFile: certs.ServerCertFile}, "give both CertFile and KeyFile"},
		{Options{DataDir: t.TempDir(), CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile, ClientCertAuth: true}, "ClientCertAuth needs TrustedCAFile"},
		{Options{DataDir: t.TempDir(), TrustedCAFile: certs.CAFile}, "TrustedCAFile needs CertFile and KeyFile"},
		{Options{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}, "use https:// with a certificate and key"},
	} {
		if _, err := Start(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}

func TestTLSServerRequiresClientCert(t *testing.T) {
	certs := NewCerts(t)
	s := NewTLS(t, certs, true)
	if !strings.HasPrefix(s.ClientURL(), "https://127.0.0.1:") {
		t.Fatalf("client URL %s", s.ClientURL())
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	pair, err := tls.LoadX509KeyPair(certs.ClientCertFile, certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs},
		}}
	}
	if err := put(t, client(pair), s.ClientURL(), "k", "v"); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if v, err := get(t, client(pair), s.ClientURL(), "k"); err != nil || v != "v" {
		t.Fatalf("get = %q, %v", v, err)
	}
	if err := put(t, client(), s.ClientURL(), "k", "v"); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a client certificate: %v, want certificate required", err)
	}
	other, err := tls.LoadX509KeyPair(certs.OtherClientCertFile, certs.OtherClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// Go only sends a certificate etcd's request names a CA of; force it.
	hc := client()
	hc.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &other, nil }
	if err := put(t, hc, s.ClientURL(), "k", "v"); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("with a certificate of another CA: %v, want unknown certificate authority", err)
	}
}

func TestClusterSurvivesLeaderKill(t *testing.T) {
	c := NewCluster(t, 3)
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range c.Members {
		names[m.Name()] = true
		if m.LeaderName() != leader.Name() {
			t.Errorf("%s says the leader is %q, want %s", m.Name(), m.LeaderName(), leader.Name())
		}
		// The JSON gateway says the same, for tests that only have curl.
		member, lead, err := memberStatus(t, m.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		if member != m.ID() || lead != leader.ID() {
			t.Errorf("status of %s: member_id %d leader %d, want %d and %d", m.Name(), member, lead, m.ID(), leader.ID())
		}
	}
	if !names["m1"] || !names["m2"] || !names["m3"] || len(c.Endpoints()) != 3 {
		t.Fatalf("members %v, endpoints %v", names, c.Endpoints())
	}
	if err := put(t, http.DefaultClient, leader.ClientURL(), "before", "1"); err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	leader.Kill()
	next, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s; %s leads after %s", leader.Name(), next.Name(), time.Since(killed).Round(time.Millisecond))
	if next == leader {
		t.Fatal("the killed member still counts as leader")
	}
	for _, m := range c.Members {
		if m == leader {
			continue
		}
		if v, err := get(t, http.DefaultClient, m.ClientURL(), "before"); err != nil || v != "1" {
			t.Fatalf("read from %s after the kill: %q, %v", m.Name(), v, err)
		}
	}
	if err := put(t, http.DefaultClient, next.ClientURL(), "after", "2"); err != nil {
		t.Fatalf("write after the kill: %v", err)
	}
}

func TestClusterCloseHandsLeadershipOver(t *testing.T) {
	c := NewCluster(t, 3)
	leader, err := c.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	leader.Close()
	next, err := c.WaitLeader(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader || !next.IsLeader() {
		t.Fatalf("leader after Close: %s (IsLeader %v)", next.Name(), next.IsLeader())
	}
}

// takeFirstPick makes the next pickURL return a port another listener holds,
// as when another process grabs a picked port before etcd binds it.
func takeFirstPick(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	taken := "http://" + l.Addr().String()
	orig, first := pickURL, true
	pickURL = func(scheme string) (string, error) {
		if first {
			first = false
			return taken, nil
		}
		return orig(scheme)
	}
	t.Cleanup(func() { pickURL = orig })
	return taken
}

func TestTakenPortIsPickedAgain(t *testing.T) {
	taken := takeFirstPick(t)
	s := New(t)
	if s.ClientURL() == taken || s.PeerURL() == taken {
		t.Fatalf("started on the taken %s", taken)
	}

	taken = takeFirstPick(t)
	c := NewCluster(t, 3)
	for _, m := range c.Members {
		if m.ClientURL() == taken || m.PeerURL() == taken {
			t.Fatalf("%s started on the taken %s", m.Name(), taken)
		}
	}

	// A URL the caller gave is not replaced.
	if _, err := Start(Options{DataDir: t.TempDir(), ClientURL: taken}); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on the taken %s: %v, want address already in use", taken, err)
	}
}
