package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Certs is a throwaway certificate authority and a server certificate it
// signed, for 127.0.0.1 and "localhost", written as PEM files that
// redis-server reads.
type Certs struct {
	// CAFile, CertFile and KeyFile are the PEM files.
	CAFile, CertFile, KeyFile string
	// Roots trusts the CA, and nothing else.
	Roots *x509.CertPool
}

// NewCerts makes a CA and a server certificate in a temporary directory.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &Certs{
		CAFile:   writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER),
		CertFile: writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", der),
		KeyFile:  writePEM(t, filepath.Join(dir, "server-key.pem"), "PRIVATE KEY", keyDER),
		Roots:    x509.NewCertPool(),
	}
	c.Roots.AddCert(ca)
	return c
}

// ClientTLS is a client configuration trusting only the CA and expecting
// serverName in the server's certificate.
func (c *Certs) ClientTLS(serverName string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.Roots, ServerName: serverName}
}

// WithTLS makes the server speak TLS only, with the certificate of c, on
// the port Addr names. Clients need not present a certificate.
func WithTLS(c *Certs) Option {
	return func(s *Server) {
		s.tls = c.ClientTLS("localhost")
		s.args = append(s.args, "--tls-cert-file", c.CertFile, "--tls-key-file", c.KeyFile,
			"--tls-ca-cert-file", c.CAFile, "--tls-auth-clients", "no")
	}
}

// tlsArgs moves the server's port to TLS, leaving no plaintext port.
func (s *Server) tlsArgs() []string {
	return []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
