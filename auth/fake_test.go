package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
)

// fakeECR is a hand-written ECRAPI: each call mints password "pw-<n>"
// valid for lifetime, unless fail says otherwise for call n (1-based).
type fakeECR struct {
	mu       sync.Mutex
	calls    int
	lifetime time.Duration
	fail     func(n int) error
	block    chan struct{} // if non-nil, each call waits for it to close
}

func (f *fakeECR) GetAuthorizationToken(ctx context.Context, _ *ecr.GetAuthorizationTokenInput, _ ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return nil, err
		}
	}
	lifetime := f.lifetime
	if lifetime == 0 {
		lifetime = 12 * time.Hour
	}
	return &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{
		AuthorizationToken: aws.String(base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "AWS:pw-%d", n))),
		ExpiresAt:          aws.Time(time.Now().Add(lifetime)),
	}}}, nil
}

func (f *fakeECR) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
