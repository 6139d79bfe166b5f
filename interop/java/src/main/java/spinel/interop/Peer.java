// Drives Spinel's Workload API with java-spiffe (DefaultWorkloadApiClient,
// DefaultX509Source) over grpc-java's Netty epoll Unix-socket transport, and
// prints what it got as one line of JSON, for the e2e interop tests.
//
//   java -cp ... spinel.interop.Peer SOCKET x509
//   java -cp ... spinel.interop.Peer SOCKET jwt AUDIENCE
//   java -cp ... spinel.interop.Peer SOCKET denied
package spinel.interop;

import io.spiffe.bundle.jwtbundle.JwtBundleSet;
import io.spiffe.bundle.x509bundle.X509BundleSet;
import io.spiffe.spiffeid.TrustDomain;
import io.spiffe.svid.jwtsvid.JwtSvid;
import io.spiffe.svid.x509svid.X509Svid;
import io.spiffe.workloadapi.DefaultWorkloadApiClient;
import io.spiffe.workloadapi.DefaultX509Source;
import io.spiffe.workloadapi.WorkloadApiClient;
import io.spiffe.workloadapi.X509Context;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;

public final class Peer {
    private Peer() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Peer SOCKET x509|jwt AUDIENCE|denied");
            System.exit(2);
        }
        String endpoint = "unix:" + args[0];
        Map<String, Object> out;
        switch (args[1]) {
            case "x509":
                out = x509(endpoint);
                break;
            case "jwt":
                out = jwt(endpoint, args[2]);
                break;
            case "denied":
                out = denied(endpoint);
                break;
            default:
                throw new IllegalArgumentException("unknown command " + args[1]);
        }
        System.out.println(Json.encode(out));
        // grpc-java's event loop threads are not daemons.
        System.exit(0);
    }

    private static WorkloadApiClient client(String endpoint) throws Exception {
        return DefaultWorkloadApiClient.newClient(
                DefaultWorkloadApiClient.ClientOptions.builder().spiffeSocketPath(endpoint).build());
    }

    private static Map<String, Object> x509(String endpoint) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (WorkloadApiClient client = client(endpoint)) {
            X509Context ctx = client.fetchX509Context();
            List<String> ids = new ArrayList<>();
            for (X509Svid svid : ctx.getX509Svids()) {
                ids.add(svid.getSpiffeId().toString());
            }
            Collections.sort(ids);
            out.put("svids", ids);
            out.put("default_svid", ctx.getDefaultSvid().getSpiffeId().toString());
            out.put("chain_len", ctx.getDefaultSvid().getChain().size());
            out.put("context_trust_domains", trustDomains(ctx.getX509BundleSet().getBundles().keySet()));
            X509BundleSet bundles = client.fetchX509Bundles();
            out.put("bundle_trust_domains", trustDomains(bundles.getBundles().keySet()));
        }
        DefaultX509Source.X509SourceOptions options = DefaultX509Source.X509SourceOptions.builder()
                .spiffeSocketPath(endpoint)
                .initTimeout(Duration.ofSeconds(30))
                .build();
        try (DefaultX509Source source = DefaultX509Source.newSource(options)) {
            out.put("source_svid", source.getX509Svid().getSpiffeId().toString());
        }
        return out;
    }

    private static Map<String, Object> jwt(String endpoint, String audience) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (WorkloadApiClient client = client(endpoint)) {
            JwtSvid svid = client.fetchJwtSvid(audience);
            out.put("spiffe_id", svid.getSpiffeId().toString());
            out.put("audience", new ArrayList<>(svid.getAudience()));
            JwtSvid validated = client.validateJwtSvid(svid.getToken(), audience);
            out.put("agent_valid_id", validated.getSpiffeId().toString());
            JwtBundleSet bundles = client.fetchJwtBundles();
            out.put("jwt_trust_domains", trustDomains(bundles.getBundles().keySet()));
            JwtSvid local = JwtSvid.parseAndValidate(svid.getToken(), bundles, Set.of(audience));
            out.put("local_valid_id", local.getSpiffeId().toString());
        }
        return out;
    }

    private static Map<String, Object> denied(String endpoint) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (WorkloadApiClient client = client(endpoint)) {
            client.fetchX509Context();
            out.put("error", null);
        } catch (Exception e) {
            out.put("error", describe(e));
        }
        return out;
    }

    /** The exception and its causes, one message after the other. */
    private static String describe(Throwable e) {
        StringBuilder s = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (s.length() > 0) {
                s.append(": ");
            }
            s.append(t.getClass().getSimpleName()).append(' ').append(t.getMessage());
        }
        return s.toString();
    }

    private static List<String> trustDomains(Set<TrustDomain> tds) {
        return tds.stream().map(TrustDomain::getName).sorted().collect(Collectors.toList());
    }
}
