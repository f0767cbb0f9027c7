package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// ErrTLSConfig marks a certificate or key the edge cannot serve with.
var ErrTLSConfig = errors.New("invalid TLS configuration")

// NewServer returns an http.Server that serves e with the edge's client
// timeouts and limits: headers must arrive within ReadHeaderTimeout and
// fit in MaxHeaderBytes, idle keep-alive connections close after
// IdleTimeout. A client trickling its headers thus costs one goroutine
// and a small buffer for a bounded time. There is no overall read or
// write timeout, which would cut off long uploads, downloads and
// streams; request bodies have ClientBodyTimeout per read instead.
//
// Served on a TLS listener configured by LoadTLS (or with its TLSConfig
// set and ServeTLS), the server speaks HTTP/2 and HTTP/1.1, chosen by
// ALPN.
func (e *Edge) NewServer() *http.Server {
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: e.opts.ReadHeaderTimeout,
		IdleTimeout:       e.opts.IdleTimeout,
		MaxHeaderBytes:    e.opts.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(e.logger.Handler(), slog.LevelDebug),
	}
	// HTTP/2 goes through a guard that fixes Go's departures from RFC
	// 9113 (see h2guard.go).
	configureHTTP2(srv)
	return srv
}

// LoadTLS reads a PEM certificate chain and its key for the edge's TLS
// listener, and returns a configuration offering HTTP/2 and HTTP/1.1.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("load TLS certificate: %w: give both --tls-cert and --tls-key", ErrTLSConfig)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s with key %s: %w: %v; give a PEM certificate chain and its matching PEM private key", certFile, keyFile, ErrTLSConfig, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}
