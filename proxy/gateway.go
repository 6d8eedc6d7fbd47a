package proxy

import (
	"context"
	"fmt"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/redis/go-redis/v9"
)

// Gateway commands: rate limits (gateway_ratelimit.go), the response cache
// (gateway_cache.go) and conversation context (gateway_context.go). Each
// family is one file of the same shape: a config type with documented
// defaults, a constructor that builds the domain object on the server's
// scripter, and the commands as gatewayCommand values. The families and
// their order live here, in gatewayFamilies.
//
// A gateway command is dispatched like any other: looked up in the command
// table (its spec has policy command.Gateway), checked for arity, and
// answered in request order. Its handler runs on its own goroutine, so a
// pipeline of gateway commands runs concurrently; the session's writer
// waits for each reply in turn.

// gatewayFunc answers one gateway command. args are the command's
// arguments, args[0] its name; they stay valid until it returns. proto is
// the client's RESP version, for building the reply. ctx ends when the
// client goes away or GatewayTimeout passes. It returns the whole reply
// frame, an error reply included.
type gatewayFunc func(ctx context.Context, args [][]byte, proto int) []byte

// gatewayCommand is one gateway command: its spec (name, arity, flags; the
// policy is set to command.Gateway) and its handler.
type gatewayCommand struct {
	spec   command.Spec
	handle gatewayFunc
}

// gatewayFamilies builds every gateway command family, in order.
func (s *Server) gatewayFamilies() ([][]gatewayCommand, error) {
	var out [][]gatewayCommand
	for _, build := range []func() ([]gatewayCommand, error){
		s.rateLimitCommands,
		s.cacheCommands,
		s.contextCommands,
	} {
		cmds, err := build()
		if err != nil {
			return nil, err
		}
		out = append(out, cmds)
	}
	return out, nil
}

// addGateway adds the gateway commands to the command table. It runs once,
// in New, before any session looks a command up.
func (s *Server) addGateway() error {
	families, err := s.gatewayFamilies()
	if err != nil {
		return err
	}
	s.gateway = map[string]gatewayFunc{}
	for _, fam := range families {
		for _, gc := range fam {
			spec := gc.spec
			spec.Policy = command.Gateway
			s.table.Add(&spec)
			if _, dup := s.gateway[spec.Name]; dup {
				return fmt.Errorf("proxy: gateway command %q defined twice", spec.Name)
			}
			s.gateway[spec.Name] = gc.handle
		}
	}
	return nil
}

// Scripter returns a redis.Scripter that runs scripts through the proxy's
// router (its pipelined node connections, redirections and retries), for
// the gateway packages used in-process.
func (s *Server) Scripter() redis.Scripter { return s.scripter }

// gwCall is a gateway command running on its goroutine.
type gwCall struct {
	done  chan struct{}
	reply []byte
}

// gateway starts a gateway command; the writer waits for its reply.
func (s *session) gateway(c *call, spec *command.Spec, args [][]byte) *call {
	h := s.srv.gateway[spec.Name]
	if h == nil {
		return c.fail("ERR command '" + spec.Name + "' is not supported by the proxy")
	}
	g := &gwCall{done: make(chan struct{})}
	// The reader reuses the Args slice for its next command (the bytes it
	// points at stay valid): the handler gets its own.
	args = append([][]byte(nil), args...)
	proto := s.proto
	ctx := s.ctx
	timeout := s.srv.cfg.GatewayTimeout
	s.srv.gwWorkers.run(func() {
		defer close(g.done)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		defer func() {
			if r := recover(); r != nil {
				s.srv.log.Error("gateway command panicked", "command", spec.Name, "panic", r)
				g.reply = resp.AppendError(nil, "ERR proxy: internal error in '"+spec.Name+"'")
			}
		}()
		g.reply = h(ctx, args, proto)
		if resp.IsError(g.reply) {
			// Say why the command stopped rather than how (a context error).
			switch {
			case s.ctx.Err() != nil:
				g.reply = resp.AppendError(nil, abandoned)
			case ctx.Err() != nil:
				g.reply = resp.AppendError(nil, "ERR proxy: '"+spec.Name+"' did not complete within the gateway timeout ("+timeout.String()+")")
			}
		}
	})
	c.gw = g
	return c
}
