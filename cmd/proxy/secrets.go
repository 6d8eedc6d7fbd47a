package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// maxSecretFile bounds a password file: a password is a line, not a blob.
const maxSecretFile = 4096

// readSecretFiles fills Password and NodePassword from -password-file and
// -node-password-file. Giving both a password and its file is an error.
func (c *Config) readSecretFiles() error {
	var errs []error
	read := func(flagName, path string, dst *string) {
		if path == "" {
			return
		}
		if *dst != "" {
			errs = append(errs, fmt.Errorf("-%s and -%s are both set; give one", flagName, strings.TrimSuffix(flagName, "-file")))
			return
		}
		v, err := readSecretFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("-%s: %w", flagName, err))
			return
		}
		*dst = v
	}
	read("password-file", c.PasswordFile, &c.Password)
	read("node-password-file", c.NodePasswordFile, &c.NodePassword)
	return errors.Join(errs...)
}

// readSecretFile returns the first line of the file at path.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s: %d bytes is not a password (limit %d)", path, len(b), maxSecretFile)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return line, nil
}
