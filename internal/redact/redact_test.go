package redact

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

const presigned = "http://127.0.0.2:9000/bucket/blob?X-Amz-Algorithm=AWS4-HMAC-SHA256" +
	"&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Feu-west-1%2Fs3%2Faws4_request" +
	"&X-Amz-Security-Token=TOKENVALUE&X-Amz-Signature=abcdef0123"

var secrets = []string{"AKIAEXAMPLE", "TOKENVALUE", "abcdef0123"}

func clean(t *testing.T, s string) {
	t.Helper()
	for _, v := range secrets {
		if strings.Contains(s, v) {
			t.Errorf("%q still holds %q", s, v)
		}
	}
}

func TestURLKeepsSchemeHostPath(t *testing.T) {
	u, _ := url.Parse(presigned)
	got := URL(u)
	if got != "http://127.0.0.2:9000/bucket/blob?REDACTED" {
		t.Fatalf("URL = %q", got)
	}
	u, _ = url.Parse("https://user:pw@host/v2/")
	if got := URL(u); got != "https://host/v2/" {
		t.Fatalf("URL = %q", got)
	}
}

func TestErrorRedactsURLErrorKeepingChain(t *testing.T) {
	base := &url.Error{Op: "Get", URL: presigned, Err: context.DeadlineExceeded}
	err := Error(fmt.Errorf("GET blob: %w", base))
	clean(t, err.Error())
	if !strings.Contains(err.Error(), "127.0.0.2:9000/bucket/blob") {
		t.Errorf("lost the host and path: %q", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("errors.Is lost the cause")
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Error("errors.As lost the *url.Error")
	}
	clean(t, URLError(err).Error())
}

func TestTextRedactsLooseParameters(t *testing.T) {
	clean(t, Text(`x "X-Amz-Signature=abcdef0123&X-Amz-Security-Token=TOKENVALUE" y`))
	clean(t, Text(strings.ReplaceAll(presigned, "http://", "")))
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	plain := errors.New("plain")
	if Error(plain) != plain { //nolint:errorlint // identity: nothing to redact, nothing wrapped
		t.Error("an error with nothing to redact was wrapped")
	}
}
