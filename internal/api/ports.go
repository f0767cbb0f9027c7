package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// tcpClaims turns the spec's tcp entries into the store's claims: one per
// whole port, or one per server name of a passthrough port.
func tcpClaims(sp *spec.Spec) []store.TCPPort {
	var claims []store.TCPPort
	for _, p := range sp.TCP {
		c := store.TCPPort{Port: p.Port, Target: p.Target, SRV: p.SRV}
		if p.TLS != spec.TLSPassthrough {
			claims = append(claims, c)
			continue
		}
		for _, h := range p.Hosts {
			c.SNI = h
			claims = append(claims, c)
		}
	}
	return claims
}

// checkPorts finds a port another app holds before anything is stored,
// so the error carries its position in the spec. The store checks again
// in the release's transaction.
func (s *Server) checkPorts(r *http.Request, sp *spec.Spec, file string, claims []store.TCPPort) error {
	if len(claims) == 0 {
		return nil
	}
	apps, err := s.cfg.Store.Apps(r.Context())
	if err != nil {
		return err
	}
	for _, c := range claims {
		for _, a := range apps {
			if a.Name == sp.Name {
				continue
			}
			for _, held := range a.TCP {
				if held.Port == c.Port && (held.SNI == "" || c.SNI == "" || strings.EqualFold(held.SNI, c.SNI)) {
					return portError(&store.PortInUseError{Port: c.Port, SNI: c.SNI, App: a.Name, Whole: held.SNI == ""}, sp, file)
				}
			}
		}
	}
	return nil
}

// portError gives a port conflict the position of the port, or of the
// server name, in the spec; other errors pass through.
func portError(err error, sp *spec.Spec, file string) error {
	var pe *store.PortInUseError
	if !errors.As(err, &pe) {
		return err
	}
	path := ""
	for i, p := range sp.TCP {
		if p.Port != pe.Port {
			continue
		}
		path = fmt.Sprintf("tcp[%d].port", i)
		for j, h := range p.Hosts {
			if pe.SNI != "" && strings.EqualFold(h, pe.SNI) {
				path = fmt.Sprintf("tcp[%d].hosts[%d]", i, j)
			}
		}
	}
	line, col := sp.Pos(path)
	msg := pe.Error() + ": choose another port or remove it from that app"
	if pe.SNI != "" && !pe.Whole {
		msg = pe.Error() + ": choose another name or remove it from that app"
	}
	d := ErrorDetail{File: file, Line: line, Column: col, Path: path, Message: msg}
	return &Error{Code: CodePortInUse, Message: formatDetail(d), Details: []ErrorDetail{d}}
}
