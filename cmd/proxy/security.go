package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/tlsfiles"
	"github.com/clusterproxy/clusterproxy/proxy"
)

// Security is the part of Config about authentication and TLS. Secrets
// read from files end up in Config.Password and Config.NodePassword; none
// of them is ever logged (see LogValue).
type Security struct {
	PasswordFile     string // file holding -password
	NodePasswordFile string // file holding -node-password
	UsersFile        string // client users (proxy.ParseUsers syntax)
	AllowDangerous   bool   // the default user may run @dangerous/@admin commands

	AuthMaxFailures int
	AuthBlockTime   time.Duration

	TLSCert, TLSKey, TLSClientCA string // client-side TLS

	NodeTLS                 bool
	NodeTLSCA               string
	NodeTLSCert, NodeTLSKey string
	NodeTLSServerName       string
	NodeTLSInsecure         bool
}

func addSecurityFlags(fs *flag.FlagSet, c *Config) {
	s := &c.Security
	fs.StringVar(&s.PasswordFile, "password-file", "", "`file` holding the client password (instead of -password; a trailing newline is ignored)")
	fs.StringVar(&s.NodePasswordFile, "node-password-file", "", "`file` holding the node password (instead of -node-password; a trailing newline is ignored)")
	fs.StringVar(&s.UsersFile, "users-file", "", "`file` of client users in Redis ACL syntax (\"user alice on #<sha256> ~app:* +@read\"); see README")
	fs.BoolVar(&s.AllowDangerous, "allow-dangerous", false, "let the default user (-password) run @dangerous and @admin commands (FLUSHALL, CONFIG, KEYS, SCRIPT FLUSH...); on by default with -dev")
	fs.IntVar(&s.AuthMaxFailures, "auth-max-failures", proxy.DefaultAuthMaxFailures, "failed AUTH attempts from one client address within a minute before its attempts are refused for -auth-block-time (negative: no limit)")
	fs.DurationVar(&s.AuthBlockTime, "auth-block-time", proxy.DefaultAuthBlockTime, "how long a client address that failed AUTH too often is refused")
	fs.StringVar(&s.TLSCert, "tls-cert", "", "`file` with the certificate chain (PEM) clients see; with -tls-key, clients must use TLS (1.2+)")
	fs.StringVar(&s.TLSKey, "tls-key", "", "`file` with the key of -tls-cert (PEM)")
	fs.StringVar(&s.TLSClientCA, "tls-client-ca", "", "`file` of CA certificates (PEM): clients must present a certificate they signed")
	fs.BoolVar(&s.NodeTLS, "node-tls", false, "connect to the nodes with TLS (1.2+), on their TLS ports")
	fs.StringVar(&s.NodeTLSCA, "node-tls-ca", "", "`file` of CA certificates (PEM) that sign the nodes' certificates (default: the system's)")
	fs.StringVar(&s.NodeTLSCert, "node-tls-cert", "", "`file` with a client certificate (PEM) for nodes that require one")
	fs.StringVar(&s.NodeTLSKey, "node-tls-key", "", "`file` with the key of -node-tls-cert (PEM)")
	fs.StringVar(&s.NodeTLSServerName, "node-tls-server-name", "", "`name` expected in the nodes' certificates (default: the host dialled)")
	fs.BoolVar(&s.NodeTLSInsecure, "node-tls-insecure-skip-verify", false, "do not verify the nodes' certificates (development only: anyone can impersonate a node)")
}

// validateSecurity checks the security settings.
func (c *Config) validateSecurity() []error {
	var errs []error
	s := &c.Security
	if s.PasswordFile != "" && c.Password != "" {
		errs = append(errs, errors.New("-password and -password-file are exclusive"))
	}
	if s.NodePasswordFile != "" && c.NodePassword != "" {
		errs = append(errs, errors.New("-node-password and -node-password-file are exclusive"))
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, errors.New("-tls-cert and -tls-key go together"))
	}
	if s.TLSClientCA != "" && s.TLSCert == "" {
		errs = append(errs, errors.New("-tls-client-ca needs -tls-cert and -tls-key"))
	}
	if !s.NodeTLS && (s.NodeTLSCA != "" || s.NodeTLSCert != "" || s.NodeTLSKey != "" || s.NodeTLSServerName != "" || s.NodeTLSInsecure) {
		errs = append(errs, errors.New("-node-tls-* settings need -node-tls"))
	}
	if (s.NodeTLSCert == "") != (s.NodeTLSKey == "") {
		errs = append(errs, errors.New("-node-tls-cert and -node-tls-key go together"))
	}
	if s.AuthBlockTime <= 0 {
		errs = append(errs, errors.New("-auth-block-time must be positive"))
	}
	return errs
}

// readSecrets reads the password files into Password and NodePassword.
func (c *Config) readSecrets() error {
	read := func(flagName, path string, dst *string) error {
		if path == "" {
			return nil
		}
		v, err := readSecretFile(path)
		if err != nil {
			return fmt.Errorf("-%s: %w", flagName, err)
		}
		*dst = v
		return nil
	}
	if err := read("password-file", c.PasswordFile, &c.Password); err != nil {
		return err
	}
	return read("node-password-file", c.NodePasswordFile, &c.NodePassword)
}

// LogValue shows the configuration with every secret replaced, so that
// logging it never reveals a password.
func (c Config) LogValue() slog.Value {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		return "***"
	}
	c.Password, c.NodePassword = redact(c.Password), redact(c.NodePassword)
	type plain Config // no LogValue: no recursion
	return slog.AnyValue(plain(c))
}

// clientTLS returns the listener's TLS configuration, nil without TLS.
func clientTLS(c *Config) (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	return tlsfiles.Server{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA}.Config()
}

// nodeTLS returns the node connections' TLS configuration, nil without TLS.
func nodeTLS(c *Config, log *slog.Logger) (*tls.Config, error) {
	if !c.NodeTLS {
		return nil, nil
	}
	if c.NodeTLSInsecure {
		log.Warn("node certificates are not verified (-node-tls-insecure-skip-verify): for development only")
	}
	return tlsfiles.Client{CAFile: c.NodeTLSCA, CertFile: c.NodeTLSCert, KeyFile: c.NodeTLSKey,
		ServerName: c.NodeTLSServerName, InsecureSkipVerify: c.NodeTLSInsecure}.Config()
}

// loadUsers reads -users-file (nil when not set), logging its warnings.
func loadUsers(c *Config, log *slog.Logger) (*proxy.Users, error) {
	if c.UsersFile == "" {
		return nil, nil
	}
	u, err := proxy.LoadUsers(c.UsersFile)
	if err != nil {
		return nil, err
	}
	for _, w := range u.Warnings {
		log.Warn(w)
	}
	for _, spec := range u.Specs {
		if spec.Name == "default" && c.Password != "" {
			log.Warn("the users file defines the default user: -password is not used", "file", c.UsersFile)
		}
	}
	return u, nil
}

// reloadUsers reads -users-file again and gives it to srv; on error the
// users in force stay. For a reload signal.
func reloadUsers(srv *proxy.Server, c *Config, log *slog.Logger) error {
	u, err := loadUsers(c, log)
	if err != nil {
		return err
	}
	if err := srv.SetUsers(u); err != nil {
		return err
	}
	log.Info("client users reloaded", "file", c.UsersFile)
	return nil
}
