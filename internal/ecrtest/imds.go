package ecrtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IMDS names the emulator answers with.
const (
	IMDSRoleName   = "ecrtest-instance-role"
	IMDSInstanceID = "i-0123456789abcdef0"
)

const (
	imdsTokenTTLHeader = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	imdsTokenHeader    = "X-Aws-Ec2-Metadata-Token"
	imdsCredsPath      = "/latest/meta-data/iam/security-credentials/"
)

// serveIMDS implements the IMDSv2 paths the SDK uses: session tokens,
// role credentials, the identity document and the region.
func (e *Emulator) serveIMDS(w http.ResponseWriter, r *http.Request) {
	e.count(KindIMDS)
	if r.URL.Path == "/latest/api/token" {
		e.imdsToken(w, r)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	e.mu.Lock()
	_, ok := e.imdsTokens[r.Header.Get(imdsTokenHeader)]
	e.mu.Unlock()
	if !ok {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch p := r.URL.Path; {
	case p == imdsCredsPath:
		writeText(w, IMDSRoleName)
	case p == imdsCredsPath+IMDSRoleName:
		e.count(KindIMDSCredentials)
		arn := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", e.cfg.accountID, IMDSRoleName, IMDSInstanceID)
		c, err := e.issueCredentials(arn, roleUserID(IMDSRoleName, IMDSInstanceID), e.cfg.credsLifetime)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{
			"Code":            "Success",
			"LastUpdated":     e.cfg.clock().UTC().Format(time.RFC3339),
			"Type":            "AWS-HMAC",
			"AccessKeyId":     c.AccessKeyID,
			"SecretAccessKey": c.SecretAccessKey,
			"Token":           c.SessionToken,
			"Expiration":      c.Expiration.Format(time.RFC3339),
		})
	case p == "/latest/dynamic/instance-identity/document":
		writeJSON(w, http.StatusOK, map[string]string{
			"region":           e.cfg.region,
			"accountId":        e.cfg.accountID,
			"availabilityZone": e.cfg.region + "a",
			"instanceId":       IMDSInstanceID,
			"instanceType":     "t3.micro",
			"architecture":     "x86_64",
			"imageId":          "ami-0123456789abcdef0",
			"pendingTime":      "2026-01-01T00:00:00Z",
		})
	case p == "/latest/meta-data/placement/region":
		writeText(w, e.cfg.region)
	case p == "/latest/meta-data/instance-id":
		writeText(w, IMDSInstanceID)
	case strings.HasPrefix(p, imdsCredsPath):
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

// imdsToken answers PUT /latest/api/token. Tokens never expire in the
// emulator; the SDK refreshes them by its own TTL.
func (e *Emulator) imdsToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTokenTTLHeader))
	if err != nil || ttl < 1 || ttl > 21600 {
		http.Error(w, "invalid TTL", http.StatusBadRequest)
		return
	}
	tok, err := randomHex(28)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	e.mu.Lock()
	e.imdsTokens[tok] = struct{}{}
	e.mu.Unlock()
	w.Header().Set(imdsTokenTTLHeader, strconv.Itoa(ttl))
	writeText(w, tok)
}

// serveContainerCredentials implements the ECS / EKS Pod Identity
// credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI).
func (e *Emulator) serveContainerCredentials(w http.ResponseWriter, r *http.Request) {
	e.count(KindContainerCreds)
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"code": "MethodNotAllowed", "message": "method not allowed"})
		return
	}
	if r.Header.Get("Authorization") != e.containerToken {
		writeJSON(w, http.StatusForbidden, map[string]string{"code": "AccessDenied", "message": "invalid authorization token"})
		return
	}
	const role, session = "ecrtest-task-role", "ecrtest"
	arn := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", e.cfg.accountID, role, session)
	c, err := e.issueCredentials(arn, roleUserID(role, session), e.cfg.credsLifetime)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"code": "InternalError", "message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"AccessKeyId":     c.AccessKeyID,
		"SecretAccessKey": c.SecretAccessKey,
		"Token":           c.SessionToken,
		"Expiration":      c.Expiration.Format(time.RFC3339),
		"RoleArn":         fmt.Sprintf("arn:aws:iam::%s:role/%s", e.cfg.accountID, role),
		"AccountId":       e.cfg.accountID,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeText(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	_, _ = w.Write([]byte(s))
}
