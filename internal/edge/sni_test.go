package edge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// clientHello returns the first flight a crypto/tls client sends when
// asking for serverName ("" sends no SNI, as for an IP address).
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true}
		if serverName == "" {
			cfg.ServerName = "127.0.0.1"
		}
		tls.Client(client, cfg).Handshake()
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, _, err := readClientHello(server)
	if err != nil {
		t.Fatalf("read a real ClientHello: %v", err)
	}
	return raw
}

func TestReadClientHello(t *testing.T) {
	for _, name := range []string{"db.example.com", "UPPER.Example.com", ""} {
		raw := clientHello(t, name)
		got, sni, err := readClientHello(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		want := map[string]string{"db.example.com": "db.example.com", "UPPER.Example.com": "upper.example.com", "": ""}[name]
		if sni != want {
			t.Errorf("server name = %q, want %q", sni, want)
		}
		if !bytes.Equal(got, raw) {
			t.Errorf("returned %d bytes, want the %d read", len(got), len(raw))
		}
	}
}

// TestReadClientHelloSplit reads a ClientHello cut into one-byte TLS
// records, which the protocol allows.
func TestReadClientHelloSplit(t *testing.T) {
	raw := clientHello(t, "split.example.com")
	body := raw[5:]
	var split []byte
	for _, c := range body {
		split = append(split, 22, 3, 1, 0, 1, c)
	}
	got, sni, err := readClientHello(bytes.NewReader(split))
	if err != nil || sni != "split.example.com" {
		t.Fatalf("got %q, %v; want split.example.com", sni, err)
	}
	if !bytes.Equal(got, split) {
		t.Error("the bytes to replay differ from those read")
	}
}

func TestReadClientHelloRejects(t *testing.T) {
	raw := clientHello(t, "a.example.com")
	tests := []struct {
		name string
		in   []byte
	}{
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.6\r\n")},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}},
		{"server hello", append([]byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, raw[9:]...)},
		{"empty record", []byte{22, 3, 1, 0, 0}},
		{"record too long", []byte{22, 3, 1, 0xff, 0xff}},
		{"cut short", raw[:len(raw)/2]},
		{"bad name", bytes.Replace(raw, []byte("a.example.com"), []byte("a.ex\x00mple.com"), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sni, err := readClientHello(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatalf("accepted, server name %q", sni)
			}
			if !errors.Is(err, ErrNoClientHello) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Errorf("err = %v, want ErrNoClientHello or a short read", err)
			}
		})
	}
}

func FuzzReadClientHello(f *testing.F) {
	f.Add(clientHello(f, "db.example.com"))
	f.Add(clientHello(f, ""))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, sni, err := readClientHello(bytes.NewReader(in))
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("returned bytes that were not read")
		}
		if err != nil {
			return
		}
		if len(sni) > 254 {
			t.Fatalf("server name of %d bytes", len(sni))
		}
		for _, c := range []byte(sni) {
			if c >= 'A' && c <= 'Z' {
				t.Fatalf("server name %q not lower case", sni)
			}
		}
	})
}
