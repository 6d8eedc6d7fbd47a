// Package tlsfiles builds crypto/tls configurations from PEM files, for the
// proxy's client listener and its node connections. Both require TLS 1.2 or
// later.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Server configures the TLS of a listener.
type Server struct {
	// CertFile and KeyFile are the server's certificate chain and key (PEM).
	// Required.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes client certificates required: they must
	// be signed by one of its CAs (PEM).
	ClientCAFile string
}

// Config loads the files and returns the listener's configuration.
func (s Server) Config() (*tls.Config, error) {
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, errors.New("tlsfiles: a certificate and a key are both required")
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: load certificate %s and key %s: %w", s.CertFile, s.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.ClientCAFile != "" {
		pool, err := loadPool(s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client configures the TLS of outgoing connections (to the nodes).
type Client struct {
	// CAFile holds the CAs that sign the servers' certificates (PEM).
	// Empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate and key, for servers
	// that require one. Both or neither.
	CertFile, KeyFile string
	// ServerName is the name checked in the servers' certificates. Empty:
	// the host of the address dialled.
	ServerName string
	// InsecureSkipVerify turns off server certificate checks. For
	// development only.
	InsecureSkipVerify bool
}

// Config loads the files and returns the connections' configuration.
func (c Client) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tlsfiles: a client certificate needs both its certificate and its key")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsfiles: load client certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsfiles: CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}
