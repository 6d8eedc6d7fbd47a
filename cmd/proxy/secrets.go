package main

import (
	"fmt"
	"os"
	"strings"
)

// maxSecretFile bounds a password file: a password is a line, not a blob.
const maxSecretFile = 4096

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
		return "", fmt.Errorf("%s is empty", path)
	}
	return line, nil
}
