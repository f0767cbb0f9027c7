package edge

import (
	"fmt"
	"io"
	"net/http"
)

// maxPageHost bounds how much of a client's Host header is echoed back.
const maxPageHost = 253

// writePage answers a request the edge itself handles (no route, no
// instance, upstream failure) with a short plain-text page that says it
// comes from skiff, so a user can tell the edge's answer from the app's.
func writePage(w http.ResponseWriter, status int, requestID, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set(requestIDHeader, requestID)
	w.WriteHeader(status)
	io.WriteString(w, msg)
}

func notFoundPage(host string) string {
	if len(host) > maxPageHost {
		host = host[:maxPageHost] + "..."
	}
	return fmt.Sprintf("skiff: no app serves host %q\n\nCheck the host name, or add it to the app's hosts in skiff.yaml.\n", host)
}

func unavailablePage(app string) string {
	return fmt.Sprintf("skiff: app %q has no ready instance right now\n\nTry again in a moment; if this lasts, check the app's status and logs.\n", app)
}

func badGatewayPage(app, requestID string) string {
	return fmt.Sprintf("skiff: app %q did not answer\n\nThe edge could not get a response from it (request id %s). Check the app's logs.\n", app, requestID)
}

func gatewayTimeoutPage(app, requestID string) string {
	return fmt.Sprintf("skiff: app %q did not answer in time\n\nThe edge gave up waiting for its response (request id %s). Check the app's logs.\n", app, requestID)
}

func tooLargePage(app string, limit int64) string {
	return fmt.Sprintf("skiff: request body too large for app %q\n\nThe app accepts bodies of at most %d bytes. Send a smaller body, or raise the app's limit.\n", app, limit)
}
