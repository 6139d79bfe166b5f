// Package out holds what the interop programs share: JSON on stdout, a
// fatal error on stderr, and a bounded context.
package out

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// JSON prints v as one line of JSON on stdout.
func JSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		Fail("encoding output: %v", err)
	}
	fmt.Println(string(b))
}

// Fail prints a message on stderr and exits 1.
func Fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// Context is cancelled after d: no program of the matrix may hang a test.
func Context(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
