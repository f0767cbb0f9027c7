package spec

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a spec, with where it is.
type Error struct {
	// File is the name the spec was parsed under; empty when unknown.
	File string
	// Line and Column are 1-based; Line 0 means the problem has no single
	// place in the file (an empty file, or a spec not parsed from one).
	Line, Column int
	// Path names the field or element, such as "health.interval" or
	// "hosts[1]"; empty for problems with the document as a whole.
	Path string
	// Message says what is wrong and what was expected.
	Message string
}

// Error formats the problem as file:line:col: path: message, leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every problem found in one spec, in file order.
type Errors struct {
	List []*Error
}

// Error puts one problem on each line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, err := range e.List {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As reach each *Error.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, err := range e.List {
		errs[i] = err
	}
	return errs
}

// ErrorAt makes an Error about the field or element at path, positioned
// where the spec wrote it (see Pos). The server uses it for problems only
// it can find, such as a host another app already serves.
func (s *Spec) ErrorAt(path, message string) *Error {
	line, col := s.Pos(path)
	return &Error{File: s.file, Line: line, Column: col, Path: path, Message: message}
}

// sortErrors orders errors by position so that a user reads them top to
// bottom, whichever pass found them; problems without a position come
// first.
func sortErrors(list []*Error) {
	slices.SortStableFunc(list, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
