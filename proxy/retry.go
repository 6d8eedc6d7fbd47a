package proxy

import (
	"bytes"

	"github.com/clusterproxy/clusterproxy/internal/command"
)

// resendable reports whether a command may be sent again when the node
// connection it was written to broke before the reply (a master killed
// mid-request): read-only commands, and plain overwrites (SET without NX
// or GET, SETEX, PSETEX, MSET), which leave the same value and give the
// same reply when applied twice. Any other write is answered with an error
// saying it may or may not have been applied, because running it again
// could apply it twice.
func resendable(spec *command.Spec, args [][]byte) bool {
	if spec.Flags&command.ReadOnly != 0 {
		return true
	}
	switch spec.Name {
	case "setex", "psetex", "mset":
		return true
	case "set":
		for _, a := range args[3:] {
			if bytes.EqualFold(a, []byte("nx")) || bytes.EqualFold(a, []byte("get")) {
				return false
			}
		}
		return true
	}
	return false
}
