// Package e2e holds skiff's end-to-end tests: real `skiff server`
// processes on free loopback ports, real app processes, kill -9 and
// restarts, load while deploying. It has no code of its own.
package e2e
