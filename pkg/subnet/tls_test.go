package subnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

// tlsDialTimeout is long on purpose: a TLS failure must be reported as soon
// as the handshake fails, not after the etcd client gives up.
const tlsDialTimeout = 20 * time.Second

func connectTLS(t *testing.T, endpoints []string, ca, cert, key string) (*Client, error, time.Duration) {
	t.Helper()
	start := time.Now()
	c, err := Connect(t.Context(), ClientConfig{
		Endpoints: endpoints, CAFile: ca, CertFile: cert, KeyFile: key, DialTimeout: tlsDialTimeout,
	})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err, time.Since(start)
}

// wantTLSError checks that err is ErrTLS with exactly the message want, on
// one line, and came before the dial timeout.
func wantTLSError(t *testing.T, err error, took time.Duration, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("connected; want error %q", want)
	}
	if !errors.Is(err, ErrTLS) {
		t.Errorf("error is not ErrTLS: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error has more than one line:\n%s", err)
	}
	if err.Error() != want {
		t.Errorf("error\n got: %s\nwant: %s", err, want)
	}
	if took > tlsDialTimeout/2 {
		t.Errorf("the error took %s, as if Connect waited for the dial timeout (%s)", took, tlsDialTimeout)
	}
}

func TestTLSClientCertReadsAndWrites(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	if !strings.HasPrefix(srv.ClientURL(), "https://127.0.0.1:") {
		t.Fatalf("client URL %s, want https on loopback", srv.ClientURL())
	}
	c, err, _ := connectTLS(t, srv.Endpoints(), certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetNetworkConfig(t.Context(), "default", testNet); err != nil {
		t.Fatal(err)
	}
	got, err := c.NetworkConfig(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if got != testNet {
		t.Fatalf("read back %+v, want %+v", got, testNet)
	}
	h := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	leases, _, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].Subnet != h.Subnet {
		t.Fatalf("leases %+v, want the one just acquired (%s)", leases, h.Subnet)
	}
}

func TestTLSWrongCA(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	_, err, took := connectTLS(t, srv.Endpoints(), certs.OtherCAFile, certs.ClientCertFile, certs.ClientKeyFile)
	wantTLSError(t, err, took, "etcd TLS: "+srv.ClientURL()+": etcd's certificate is not signed by the CA in "+certs.OtherCAFile+"; give --etcd-cafile the CA that signed etcd's server certificate")
}

func TestTLSNoCAFileUsesSystemCAs(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, false)
	_, err, took := connectTLS(t, srv.Endpoints(), "", "", "")
	wantTLSError(t, err, took, "etcd TLS: "+srv.ClientURL()+": etcd's certificate is not signed by a CA this host trusts; give --etcd-cafile the CA that signed etcd's server certificate")
}

func TestTLSMissingClientCert(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	_, err, took := connectTLS(t, srv.Endpoints(), certs.CAFile, "", "")
	wantTLSError(t, err, took, "etcd TLS: "+srv.ClientURL()+": etcd requires a client certificate (tls: certificate required); give --etcd-certfile and --etcd-keyfile, a certificate and key signed by a CA etcd trusts")
}

func TestTLSClientCertFromOtherCA(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	_, err, took := connectTLS(t, srv.Endpoints(), certs.CAFile, certs.OtherClientCertFile, certs.OtherClientKeyFile)
	wantTLSError(t, err, took, "etcd TLS: "+srv.ClientURL()+": etcd rejected the client certificate in "+certs.OtherClientCertFile+" (tls: unknown certificate authority); give --etcd-certfile a certificate signed by the CA etcd trusts for clients (etcd's --trusted-ca-file)")
}

func TestTLSServerWithoutClientAuthNeedsOnlyCA(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, false)
	c, err, _ := connectTLS(t, srv.Endpoints(), certs.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetNetworkConfig(t.Context(), "default", testNet); err != nil {
		t.Fatal(err)
	}
}

func TestTLSHostnameMismatch(t *testing.T) {
	certs := etcdtest.NewCerts(t, "etcd.example")
	srv := etcdtest.NewTLS(t, certs, false)
	_, err, took := connectTLS(t, srv.Endpoints(), certs.CAFile, "", "")
	wantTLSError(t, err, took, "etcd TLS: "+srv.ClientURL()+": etcd's certificate is not valid for 127.0.0.1 (it names etcd.example); use an endpoint the certificate names, or reissue etcd's certificate for 127.0.0.1")
}

func TestTLSToPlainEtcd(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.New(t)
	hostport := strings.TrimPrefix(srv.ClientURL(), "http://")
	_, err, took := connectTLS(t, []string{"https://" + hostport}, certs.CAFile, "", "")
	wantTLSError(t, err, took, "etcd TLS: https://"+hostport+": etcd does not speak TLS on this port; write the endpoint as http://"+hostport+", or enable TLS on etcd")
}

func TestTLSExpiredServerCert(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "expired.pem"), filepath.Join(dir, "expired-key.pem")
	writeExpiredCert(t, cert, key)
	srv := etcdtest.NewWith(t, etcdtest.Options{CertFile: cert, KeyFile: key})
	_, err, took := connectTLS(t, srv.Endpoints(), cert, "", "")
	if err == nil {
		t.Fatal("connected with an expired certificate")
	}
	prefix := "etcd TLS: " + srv.ClientURL() + ": etcd's certificate is not valid (certificate has expired or is not yet valid: "
	suffix := "); renew etcd's server certificate, or check this host's clock"
	if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, suffix) {
		t.Errorf("error\n got: %s\nwant: %s…%s", msg, prefix, suffix)
	}
	wantTLSError(t, err, took, err.Error())
}

// writeExpiredCert writes a self-signed certificate for 127.0.0.1 that
// expired yesterday, and its key.
func writeExpiredCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "expired etcd"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(-24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// One endpoint that does not answer is no TLS verdict: the client uses the
// others.
func TestTLSUnreachableEndpointIsNoVerdict(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	eps := append([]string{"https://127.0.0.1:1"}, srv.Endpoints()...)
	c, err, _ := connectTLS(t, eps, certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkConfig(t.Context(), "default"); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("read: %v, want ErrNoConfig", err)
	}
}

// The files are checked before anything is dialled: no etcd needed.
func TestTLSFileErrors(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not-pem.txt")
	if err := os.WriteFile(notPEM, []byte("hello, not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const ep = "https://127.0.0.1:1"
	const (
		caWhat   = "give the CA certificate (PEM) that signed etcd's server certificate"
		certWhat = "give the client certificate (PEM) for etcd"
		keyWhat  = "give the private key (PEM) of the client certificate"
	)
	for _, tc := range []struct {
		name          string
		endpoint      string
		ca, cert, key string
		want          string
	}{
		{name: "CA missing", ca: missing,
			want: "--etcd-cafile " + missing + " does not exist; " + caWhat},
		{name: "CA not PEM", ca: notPEM,
			want: "--etcd-cafile " + notPEM + " holds no PEM certificate (-----BEGIN CERTIFICATE-----); " + caWhat},
		{name: "CA is a key", ca: certs.ClientKeyFile,
			want: "--etcd-cafile " + certs.ClientKeyFile + " holds no PEM certificate (-----BEGIN CERTIFICATE-----); " + caWhat},
		{name: "CA is a directory", ca: dir,
			want: "--etcd-cafile " + dir + " cannot be read (is a directory); " + caWhat},
		{name: "cert without key", ca: certs.CAFile, cert: certs.ClientCertFile,
			want: "--etcd-certfile " + certs.ClientCertFile + " is given without --etcd-keyfile; give both the client certificate and its private key, or neither"},
		{name: "key without cert", ca: certs.CAFile, key: certs.ClientKeyFile,
			want: "--etcd-keyfile " + certs.ClientKeyFile + " is given without --etcd-certfile; give both the client certificate and its private key, or neither"},
		{name: "cert missing", ca: certs.CAFile, cert: missing, key: certs.ClientKeyFile,
			want: "--etcd-certfile " + missing + " does not exist; " + certWhat},
		{name: "cert not PEM", ca: certs.CAFile, cert: notPEM, key: certs.ClientKeyFile,
			want: "--etcd-certfile " + notPEM + " holds no PEM certificate (-----BEGIN CERTIFICATE-----); " + certWhat},
		{name: "key missing", ca: certs.CAFile, cert: certs.ClientCertFile, key: missing,
			want: "--etcd-keyfile " + missing + " does not exist; " + keyWhat},
		{name: "key not PEM", ca: certs.CAFile, cert: certs.ClientCertFile, key: notPEM,
			want: "--etcd-keyfile " + notPEM + " holds no PEM private key; " + keyWhat},
		{name: "cert and key swapped", ca: certs.CAFile, cert: certs.ClientKeyFile, key: certs.ClientCertFile,
			want: "--etcd-certfile " + certs.ClientKeyFile + " holds no PEM certificate (-----BEGIN CERTIFICATE-----); " + certWhat},
		{name: "key is a certificate", ca: certs.CAFile, cert: certs.ClientCertFile, key: certs.CAFile,
			want: "--etcd-keyfile " + certs.CAFile + " holds no PEM private key (it holds a certificate: are --etcd-certfile and --etcd-keyfile swapped?); " + keyWhat},
		{name: "key of another certificate", ca: certs.CAFile, cert: certs.ClientCertFile, key: certs.OtherClientKeyFile,
			want: "--etcd-keyfile " + certs.OtherClientKeyFile + " is not the private key of the certificate in --etcd-certfile " + certs.ClientCertFile + "; give the key that belongs to that certificate"},
		{name: "TLS flags with an http endpoint", endpoint: "http://127.0.0.1:2379", ca: certs.CAFile,
			want: "endpoint http://127.0.0.1:2379 is plain http but --etcd-cafile/--etcd-certfile/--etcd-keyfile are given; write the endpoint as https://127.0.0.1:2379, or drop the TLS flags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := ep
			if tc.endpoint != "" {
				endpoint = tc.endpoint
			}
			_, err, took := connectTLS(t, []string{endpoint}, tc.ca, tc.cert, tc.key)
			wantTLSError(t, err, took, "etcd TLS: "+tc.want)
		})
	}
}
