// Command chatflow is a worked example of one chat request through
// clusterproxy's gateway primitives: rate limits with a token estimate,
// the response cache with single flight, and the conversation context.
//
// By default it talks to the proxy with a plain go-redis Client and the
// gateway commands (RL.*, CACHE.*, CTX.*); -direct-packages runs the same
// flow with the Go packages (ratelimit, cache, contextstore), on a
// ClusterClient when -cluster is given, else on the Client of the proxy.
// The model is a deterministic fake that answers the prompt back.
//
//	go run ./examples/chatflow -addr 127.0.0.1:6380 -prompt "What is Redis?"
//	go run ./examples/chatflow -addr 127.0.0.1:6380 -prompt "What is Redis?" -id req-2 -trace
//	go run ./examples/chatflow -direct-packages -cluster 127.0.0.1:7001,127.0.0.1:7002
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	var (
		addr     = flag.String("addr", "127.0.0.1:6380", "the proxy's `host:port`")
		cluster  = flag.String("cluster", "", "comma-separated cluster nodes for -direct-packages (default: the proxy at -addr)")
		direct   = flag.Bool("direct-packages", false, "use the Go packages instead of the gateway commands")
		tenant   = flag.String("tenant", "acme", "tenant")
		session  = flag.String("session", "chat-42", "conversation id")
		id       = flag.String("id", "req-1", "request id (message ids are <id>:user and <id>:assistant)")
		prompt   = flag.String("prompt", "What is Redis?", "the user's message")
		fail     = flag.Bool("fail", false, "make the model call fail (shows RL.RELEASE and CACHE.ABORT)")
		trace    = flag.Bool("trace", false, "print every command sent to the proxy and its reply, as redis-cli does")
		protocol = flag.Int("resp", 3, "RESP version of the proxy client (2 or 3)")
	)
	flag.Parse()

	model := EchoModel
	if *fail {
		model = FailingModel
	}
	if *trace {
		*protocol = 2 // redis-cli's view of the replies
	}
	rdb := redis.NewClient(&redis.Options{Addr: *addr, Protocol: *protocol, DisableIdentity: true})
	defer rdb.Close()
	if *trace {
		rdb.AddHook(traceHook{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := DefaultConfig(*tenant, *session)
	req := Request{ID: *id, Prompt: *prompt}

	var out Outcome
	var err error
	if *direct {
		var s redis.Scripter = rdb
		if *cluster != "" {
			cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(*cluster, ","), DisableIdentity: true})
			defer cc.Close()
			s = cc
		}
		var f *PackageFlow
		if f, err = NewPackageFlow(s, cfg, model); err == nil {
			out, err = f.Chat(ctx, req)
		}
	} else {
		out, err = NewProxyFlow(rdb, cfg, model).Chat(ctx, req)
	}
	var lim *LimitedError
	switch {
	case errors.As(err, &lim):
		fmt.Fprintln(os.Stderr, err) // a gateway answers 429 with Retry-After
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("answer:   %s\ncache:    %s\ntokens:   estimate %d, actual %d (history %d, answer %d), settle delta %d\n",
		out.Answer, out.Cache, out.Estimate, out.Actual, out.HistoryTokens, out.AnswerTokens, out.Delta)
}

// traceHook prints each command and its reply in redis-cli's form.
type traceHook struct{}

func (traceHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (traceHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (traceHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c, ok := cmd.(*redis.Cmd)
		if !ok || strings.EqualFold(cmd.Name(), "hello") {
			return err
		}
		var b strings.Builder
		b.WriteString(">")
		for _, a := range cmd.Args() {
			b.WriteString(" " + cliArg(fmt.Sprint(a)))
		}
		b.WriteString("\n")
		if err != nil && err != redis.Nil {
			b.WriteString("(error) " + err.Error() + "\n")
		} else {
			writeReply(&b, c.Val(), "")
		}
		fmt.Print(b.String())
		return err
	}
}

// cliArg quotes an argument the way redis-cli's prompt accepts it.
func cliArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	if !strings.ContainsAny(s, "'\\") {
		return "'" + s + "'"
	}
	return fmt.Sprintf("%q", s)
}

// writeReply writes v as redis-cli prints a RESP2 reply; indent is the
// indentation of the lines after the first.
func writeReply(b *strings.Builder, v any, indent string) {
	switch x := v.(type) {
	case nil:
		b.WriteString("(nil)\n")
	case int64:
		fmt.Fprintf(b, "(integer) %d\n", x)
	case string:
		if x == "OK" { // a status reply; no bulk reply of the example is "OK"
			b.WriteString("OK\n")
			return
		}
		fmt.Fprintf(b, "%q\n", x)
	case []any:
		if len(x) == 0 {
			b.WriteString("(empty array)\n")
			return
		}
		w := len(fmt.Sprint(len(x)))
		for i, e := range x {
			label := fmt.Sprintf("%*d) ", w, i+1)
			if i > 0 {
				b.WriteString(indent)
			}
			b.WriteString(label)
			writeReply(b, e, indent+strings.Repeat(" ", len(label)))
		}
	default:
		fmt.Fprintf(b, "%v\n", x)
	}
}
