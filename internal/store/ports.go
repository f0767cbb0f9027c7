package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ErrPortInUse: a TCP port (or a TLS server name on a shared port) is
// already forwarded to another app. The error is a *PortInUseError.
var ErrPortInUse = errors.New("port in use")

// TCPPort is one edge port forwarded to an app: a whole port, or one TLS
// server name on a port shared by passthrough. A spec entry with several
// hosts becomes one TCPPort per host.
type TCPPort struct {
	// Port is the edge's public port, 1-65535.
	Port int
	// SNI is the TLS server name routed to the app ("" = the whole port).
	// It may be a wildcard, "*.example.com".
	SNI string
	// Target is the port inside the instance, 0 for the app's port.
	Target int
	// SRV is the DNS SRV service name to publish, "" for none.
	SRV string
}

// PortInUseError says which app already holds a port.
type PortInUseError struct {
	Port int
	// SNI is the server name asked for, "" when the whole port was.
	SNI string
	// App is the app that holds the port or the name.
	App string
	// Whole: App forwards the whole port, so no server name on it is free.
	Whole bool
}

func (e *PortInUseError) Error() string {
	switch {
	case e.Whole:
		return fmt.Sprintf("TCP port %d is already forwarded to app %q", e.Port, e.App)
	case e.SNI == "":
		return fmt.Sprintf("TCP port %d is shared by TLS server name with app %q, so it cannot be forwarded whole", e.Port, e.App)
	default:
		return fmt.Sprintf("TLS server name %q on TCP port %d is already routed to app %q", e.SNI, e.Port, e.App)
	}
}

// Unwrap makes errors.Is(err, ErrPortInUse) hold.
func (e *PortInUseError) Unwrap() error { return ErrPortInUse }

// checkTCP returns a *PortInUseError for the first of ports that another
// app holds: on a port, either one app holds the whole of it, or apps
// hold distinct server names.
func checkTCP(ctx context.Context, q querier, app string, ports []TCPPort) error {
	for _, p := range ports {
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("create release of app %q: TCP port %d is out of range", app, p.Port)
		}
		rows, err := q.QueryContext(ctx, `SELECT sni, app FROM tcp_ports WHERE port = ? AND app != ?
			AND (sni = '' OR ? = '' OR sni = ?) ORDER BY pos LIMIT 1`, p.Port, app, p.SNI, p.SNI)
		if err != nil {
			return fmt.Errorf("check TCP port %d: %w", p.Port, err)
		}
		var sni, owner string
		found := rows.Next()
		if found {
			err = rows.Scan(&sni, &owner)
		}
		if err == nil {
			err = rows.Err()
		}
		rows.Close()
		if err != nil {
			return fmt.Errorf("check TCP port %d: %w", p.Port, err)
		}
		if found {
			return &PortInUseError{Port: p.Port, SNI: p.SNI, App: owner, Whole: sni == ""}
		}
	}
	return nil
}

// replaceTCP makes ports the app's forwarded ports. A (port, name) pair
// listed twice is kept once.
func replaceTCP(ctx context.Context, t *tx, app string, ports []TCPPort) error {
	if _, err := t.ExecContext(ctx, `DELETE FROM tcp_ports WHERE app = ?`, app); err != nil {
		return fmt.Errorf("replace TCP ports of app %q: %w", app, err)
	}
	seen := map[string]bool{}
	for i, p := range ports {
		k := fmt.Sprintf("%d/%s", p.Port, strings.ToLower(p.SNI))
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, err := t.ExecContext(ctx, `INSERT INTO tcp_ports (port, sni, app, target, srv, pos) VALUES (?, ?, ?, ?, ?, ?)`,
			p.Port, p.SNI, app, p.Target, p.SRV, i); err != nil {
			return fmt.Errorf("replace TCP ports of app %q: %w", app, err)
		}
	}
	return nil
}

const tcpColumns = `port, sni, target, srv`

func scanTCP(rows *sql.Rows) (TCPPort, error) {
	var p TCPPort
	err := rows.Scan(&p.Port, &p.SNI, &p.Target, &p.SRV)
	return p, err
}

// appTCP reads one app's forwarded ports.
func appTCP(ctx context.Context, q querier, app string) ([]TCPPort, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+tcpColumns+` FROM tcp_ports WHERE app = ? ORDER BY pos`, app)
	if err != nil {
		return nil, fmt.Errorf("read TCP ports of app %q: %w", app, err)
	}
	defer rows.Close()
	var ports []TCPPort
	for rows.Next() {
		p, err := scanTCP(rows)
		if err != nil {
			return nil, fmt.Errorf("read TCP ports of app %q: %w", app, err)
		}
		ports = append(ports, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read TCP ports of app %q: %w", app, err)
	}
	return ports, nil
}

// allTCP fills the TCP ports of apps, found by name through index.
func allTCP(ctx context.Context, q querier, apps []App, index map[string]int) error {
	rows, err := q.QueryContext(ctx, `SELECT app, `+tcpColumns+` FROM tcp_ports ORDER BY app, pos`)
	if err != nil {
		return fmt.Errorf("list TCP ports: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var app string
		var p TCPPort
		if err := rows.Scan(&app, &p.Port, &p.SNI, &p.Target, &p.SRV); err != nil {
			return fmt.Errorf("list TCP ports: %w", err)
		}
		if i, ok := index[app]; ok {
			apps[i].TCP = append(apps[i].TCP, p)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list TCP ports: %w", err)
	}
	return nil
}
