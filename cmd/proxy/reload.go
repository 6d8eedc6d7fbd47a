package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
)

// reloadable reports whether SIGHUP applies the Config field to a running
// proxy. Every other setting needs a restart; a changed one is logged as such.
func reloadable(field string) bool {
	switch field {
	case "LogLevel", "MaxClients", "IdleTimeout", "ClientWriteTimeout", "SlowlogThreshold", "SlowlogMaxLen":
		return true
	}
	return false
}

// proxySettings returns the settings of cfg that a running server takes.
func proxySettings(cfg *Config) proxy.Settings {
	return proxy.Settings{
		MaxClients:         cfg.MaxClients,
		IdleTimeout:        cfg.IdleTimeout,
		ClientWriteTimeout: cfg.ClientWriteTimeout,
		SlowlogThreshold:   slowlogThreshold(cfg.SlowlogThreshold),
		SlowlogMaxLen:      cfg.SlowlogMaxLen,
	}
}

// slowlogThreshold maps the flag (0: every command) to proxy.Settings (0:
// the default, 1ns: every command).
func slowlogThreshold(d time.Duration) time.Duration {
	if d == 0 {
		return time.Nanosecond
	}
	return d
}

// reloadOnHUP parses the settings again on every SIGHUP until ctx ends (the
// -config file and the environment are read again; flags stay) and applies
// the reloadable ones. A config that does not parse or validate changes
// nothing.
func reloadOnHUP(ctx context.Context, base *Config, srv *proxy.Server, level *slog.LevelVar, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			getenv := base.getenv
			if getenv == nil {
				getenv = os.Getenv
			}
			next, err := parseConfig(base.args, getenv, io.Discard)
			if err != nil {
				log.Error("reload failed; settings unchanged", "err", strings.ReplaceAll(err.Error(), "\n", "; "))
				continue
			}
			l, _ := parseLevel(next.LogLevel)
			level.Set(l)
			st := proxySettings(next)
			srv.Reload(st)
			log.Info("settings reloaded", "log_level", l.String(), "max_clients", st.MaxClients,
				"idle_timeout", st.IdleTimeout, "client_write_timeout", st.ClientWriteTimeout, "slowlog_threshold", next.SlowlogThreshold, "slowlog_max_len", st.SlowlogMaxLen)
			if changed := restartOnly(base, next); len(changed) > 0 {
				log.Warn("changed settings take effect only after a restart", "settings", changed)
			}
		}
	}()
}

// restartOnly lists the exported Config fields that differ between a and b
// and that SIGHUP does not apply.
func restartOnly(a, b *Config) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := 0; i < va.NumField(); i++ {
		f := va.Type().Field(i)
		if !f.IsExported() || reloadable(f.Name) {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, f.Name)
		}
	}
	return out
}
