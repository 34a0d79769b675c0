package etcdtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files for a TLS etcd, generated at test time with
// crypto/x509 (no openssl): a CA, a server certificate signed by it, a client
// certificate signed by it, and a second, unrelated CA with its own client
// certificate, for the failure cases.
type Certs struct {
	Dir string

	// CAFile is the CA that signed the server and client certificates: give
	// it to clients (--etcd-cafile) and to etcd (Options.TrustedCAFile).
	CAFile string
	// ServerCertFile and ServerKeyFile are etcd's certificate (for the hosts
	// given to WriteCerts) and key; the certificate is also valid for client
	// authentication, which etcd's own gRPC gateway needs when client
	// certificates are required.
	ServerCertFile, ServerKeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate signed by CAFile.
	ClientCertFile, ClientKeyFile string

	// OtherCAFile is a CA that signed nothing etcd uses: the wrong
	// --etcd-cafile.
	OtherCAFile string
	// OtherClientCertFile and OtherClientKeyFile are a client certificate
	// signed by OtherCAFile, which an etcd trusting CAFile rejects.
	OtherClientCertFile, OtherClientKeyFile string
}

// DefaultCertHosts are the names the server certificate is valid for when
// WriteCerts gets none.
var DefaultCertHosts = []string{"127.0.0.1", "localhost"}

// NewCerts writes a fresh set of certificates into a temp dir of the test,
// with the server certificate valid for hosts (DefaultCertHosts if none).
func NewCerts(t testing.TB, hosts ...string) *Certs {
	t.Helper()
	c, err := WriteCerts(t.TempDir(), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// WriteCerts generates the certificates into dir (which must exist). hosts
// are IP addresses or DNS names the server certificate is valid for
// (DefaultCertHosts if none). Keys are ECDSA P-256, certificates valid from an
// hour ago for a day.
func WriteCerts(dir string, hosts ...string) (*Certs, error) {
	if len(hosts) == 0 {
		hosts = DefaultCertHosts
	}
	c := &Certs{
		Dir:                 dir,
		CAFile:              filepath.Join(dir, "ca.pem"),
		ServerCertFile:      filepath.Join(dir, "server.pem"),
		ServerKeyFile:       filepath.Join(dir, "server-key.pem"),
		ClientCertFile:      filepath.Join(dir, "client.pem"),
		ClientKeyFile:       filepath.Join(dir, "client-key.pem"),
		OtherCAFile:         filepath.Join(dir, "other-ca.pem"),
		OtherClientCertFile: filepath.Join(dir, "other-client.pem"),
		OtherClientKeyFile:  filepath.Join(dir, "other-client-key.pem"),
	}
	ca, err := newCA("overlay test CA", c.CAFile)
	if err != nil {
		return nil, err
	}
	other, err := newCA("unrelated test CA", c.OtherCAFile)
	if err != nil {
		return nil, err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "etcd server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	if err := ca.issue(server, c.ServerCertFile, c.ServerKeyFile); err != nil {
		return nil, err
	}
	client := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: "overlay client"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	if err := ca.issue(client(), c.ClientCertFile, c.ClientKeyFile); err != nil {
		return nil, err
	}
	if err := other.issue(client(), c.OtherClientCertFile, c.OtherClientKeyFile); err != nil {
		return nil, err
	}
	return c, nil
}

type certAuthority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(name, certFile string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	if err := setValidity(tmpl); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: parse CA certificate: %w", err)
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return &certAuthority{cert: cert, key: key}, nil
}

// issue signs tmpl (a leaf) with the CA and writes certificate and key.
func (ca *certAuthority) issue(tmpl *x509.Certificate, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("etcdtest: generate key: %w", err)
	}
	if err := setValidity(tmpl); err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("etcdtest: sign %s: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("etcdtest: encode key: %w", err)
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyFile, "PRIVATE KEY", keyDER)
}

func setValidity(tmpl *x509.Certificate) error {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return fmt.Errorf("etcdtest: serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	return nil
}

func writePEM(path, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	return nil
}
