package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// serveTCPEcho answers each line a client sends to addr with "release R
// instance I: <line>". A process app has one port, which its health probe
// uses too: a connection whose first line is an HTTP GET gets an HTTP
// answer, 200, or 503 while the file $UNREADY_DIR/<instance> exists, so
// a test can take one instance out of readiness.
//
// With ECHO_TLS_CERT and ECHO_TLS_KEY (PEM files) it speaks TLS, as an
// app behind a tls: passthrough port terminates TLS itself.
func serveTCPEcho(addr, release, inst string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if certFile := os.Getenv("ECHO_TLS_CERT"); certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, os.Getenv("ECHO_TLS_KEY"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	fmt.Printf("testapp %s of release %s echoing TCP on %s\n", inst, release, addr)
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		go echoConn(c, release, inst)
	}
}

func echoConn(c net.Conn, release, inst string) {
	defer c.Close()
	r := bufio.NewReader(c)
	first := true
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if first && strings.HasPrefix(line, "GET ") {
			healthAnswer(c, r, inst)
			return
		}
		first = false
		fmt.Fprintf(c, "release %s instance %s: %s\n", release, inst, line)
	}
}

// healthAnswer reads the rest of an HTTP request's headers and answers it.
func healthAnswer(c net.Conn, r *bufio.Reader, inst string) {
	for {
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) == "" {
			break
		}
	}
	status, body := "200 OK", "ok\n"
	if dir := os.Getenv("UNREADY_DIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, inst)); err == nil {
			status, body = "503 Service Unavailable", "not ready\n"
		}
	}
	fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, len(body), body)
}
