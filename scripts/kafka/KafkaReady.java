// Protocol-level readiness probe for the test broker started by scripts/kafka.sh.
// Usage: java -cp <classes>:<libs>/* KafkaReady <bootstrap> <timeout-seconds> [broker-pid]
// Exit 0 once the broker answers DescribeCluster with at least one live (unfenced) broker;
// 2 on timeout; 3 if the broker process given by pid has exited meanwhile.
import java.time.Duration;
import java.util.Collection;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

public final class KafkaReady {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: KafkaReady <bootstrap> <timeout-seconds> [pid]");
            System.exit(64);
        }
        String bootstrap = args[0];
        long deadline = System.nanoTime() + Long.parseLong(args[1]) * 1_000_000_000L;
        long pid = args.length > 2 ? Long.parseLong(args[2]) : -1;

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "kafka-sh-ready-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "250");
        props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        props.put(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, "250");

        Admin admin = Admin.create(props);
        String last = "no answer from " + bootstrap;
        int code;
        while (true) {
            if (pid > 0) {
                Optional<ProcessHandle> h = ProcessHandle.of(pid);
                if (h.isEmpty() || !h.get().isAlive()) {
                    System.err.println("broker process " + pid + " exited during startup");
                    code = 3;
                    break;
                }
            }
            try {
                DescribeClusterResult r = admin.describeCluster(new DescribeClusterOptions().timeoutMs(2000));
                Collection<Node> nodes = r.nodes().get();
                String clusterId = r.clusterId().get();
                if (!nodes.isEmpty()) {
                    System.out.println("ready: cluster " + clusterId + ", " + nodes.size() + " live broker(s)");
                    code = 0;
                    break;
                }
                last = "cluster " + clusterId + " has no live broker yet";
            } catch (ExecutionException e) {
                last = String.valueOf(e.getCause());
            }
            if (System.nanoTime() > deadline) {
                System.err.println("timed out: " + last);
                code = 2;
                break;
            }
            Thread.sleep(200);
        }
        admin.close(Duration.ofSeconds(1));
        System.exit(code);
    }
}
