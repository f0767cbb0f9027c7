package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/store"
)

// tcpHost checks --tcp-addr: a host or IP address only, since the ports
// come from the apps' specs. "" listens on every interface.
func tcpHost(addr string) (string, error) {
	if addr == "" || net.ParseIP(strings.Trim(addr, "[]")) != nil {
		return strings.Trim(addr, "[]"), nil
	}
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return "", fmt.Errorf("--tcp-addr %q: give only the host to listen on, without a port (%s): each app's tcp: entries choose the ports", addr, port)
	}
	if strings.ContainsAny(addr, "/: ") {
		return "", fmt.Errorf("--tcp-addr %q: expected a host or IP address, such as 127.0.0.1", addr)
	}
	return addr, nil
}

// recordPortEvent records, for each app on the port, that the edge could
// not open one of its TCP ports, or opened it after failing.
func recordPortEvent(ctx context.Context, st *store.Store, log *slog.Logger, ev edge.TCPPortEvent) {
	kind := "edge.port_open"
	msg := fmt.Sprintf("TCP port %d is open again", ev.Port)
	var data map[string]any
	if ev.Err != nil {
		kind = "edge.port_unavailable"
		msg = fmt.Sprintf("TCP port %d cannot be opened (%v); the edge retries until it is free", ev.Port, ev.Err)
		data = map[string]any{"port": ev.Port}
	}
	for _, app := range ev.Apps {
		if _, err := st.AddEvent(ctx, store.Event{App: app, Kind: kind, Message: msg, Data: data}); err != nil {
			log.Error("record event", "kind", kind, "app", app, "err", err)
		}
	}
}
