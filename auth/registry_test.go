package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRegistryURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Registry
	}{
		{"https://123456789012.dkr.ecr.eu-central-1.amazonaws.com", Registry{"123456789012", "eu-central-1", false, "amazonaws.com"}},
		{"123456789012.dkr.ecr.us-east-1.amazonaws.com:443/some/path", Registry{"123456789012", "us-east-1", false, "amazonaws.com"}},
		{"https://123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", Registry{"123456789012", "us-gov-west-1", true, "amazonaws.com"}},
		{"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", Registry{"123456789012", "cn-north-1", false, "amazonaws.com.cn"}},
		{"123456789012.dkr-ecr.eu-west-1.on.aws", Registry{"123456789012", "eu-west-1", false, "on.aws"}},
		{"123456789012.dkr-ecr-fips.us-east-2.on.aws", Registry{"123456789012", "us-east-2", true, "on.aws"}},
		{"123456789012.dkr.ecr.cn-northwest-1.on.amazonwebservices.com.cn", Registry{"123456789012", "cn-northwest-1", false, "on.amazonwebservices.com.cn"}},
		{"HTTPS://123456789012.DKR.ECR.EU-WEST-1.AMAZONAWS.COM", Registry{"123456789012", "eu-west-1", false, "amazonaws.com"}},
		{"123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", Registry{"123456789012", "us-iso-east-1", false, "c2s.ic.gov"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRegistryURL(tt.in)
			if err != nil {
				t.Fatalf("ParseRegistryURL(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRegistryURL(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseRegistryURLRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"http://127.0.0.1:5000",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example.com",
		"https://12345678901.dkr.ecr.eu-west-1.amazonaws.com",
		"https://public.ecr.aws",
		"https://registry.example.com/123456789012.dkr.ecr.eu-west-1.amazonaws.com",
		"",
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseRegistryURL(in); !errors.Is(err, ErrNotECR) {
				t.Errorf("ParseRegistryURL(%q) error = %v, want ErrNotECR", in, err)
			}
		})
	}
}

func TestResolveRegion(t *testing.T) {
	t.Parallel()
	const ecrURL = "https://123456789012.dkr.ecr.ap-south-1.amazonaws.com"
	tests := []struct {
		name                                  string
		explicit, awsRegion, awsDefault, ecrU string
		want                                  string
	}{
		{"explicit wins", "eu-west-3", "us-east-1", "us-east-2", ecrURL, "eu-west-3"},
		{"AWS_REGION next", "", "us-east-1", "us-east-2", ecrURL, "us-east-1"},
		{"AWS_DEFAULT_REGION next", "", "", "us-east-2", ecrURL, "us-east-2"},
		{"from the URL last", "", "", "", ecrURL, "ap-south-1"},
		{"loopback with explicit", "eu-west-1", "", "", "http://127.0.0.1:5000", "eu-west-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveRegion(tt.explicit, tt.awsRegion, tt.awsDefault, tt.ecrU)
			if err != nil {
				t.Fatalf("ResolveRegion: %v", err)
			}
			if got != tt.want {
				t.Errorf("ResolveRegion = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResolveRegionNamesBothFixes(t *testing.T) {
	t.Parallel()
	_, err := ResolveRegion("", "", "", "http://127.0.0.1:5000")
	if !errors.Is(err, ErrNoRegion) {
		t.Fatalf("error = %v, want ErrNoRegion", err)
	}
	for _, want := range []string{"ecr.region", "AWS_REGION", "127.0.0.1:5000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func FuzzParseRegistryURL(f *testing.F) {
	for _, s := range []string{"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012.dkr-ecr.us-east-1.on.aws", "http://127.0.0.1:5000", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		reg, err := ParseRegistryURL(in)
		if err != nil {
			return
		}
		if len(reg.AccountID) != 12 || reg.Region == "" || reg.DNSSuffix == "" {
			t.Fatalf("ParseRegistryURL(%q) = %+v: incomplete", in, reg)
		}
	})
}
