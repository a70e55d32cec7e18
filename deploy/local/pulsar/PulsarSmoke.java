// Produce one message to a topic and consume it back, with the Java client from the broker's own
// jar closure. Run by deploy/local/smoke.sh as a single-file source program:
//   java -cp "$PULSAR_LIB_DIR/*" deploy/local/pulsar/PulsarSmoke.java pulsar://127.0.0.1:6650 persistent://affiliate/platform/smoke
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;

public class PulsarSmoke {
    public static void main(String[] args) throws Exception {
        String url = args.length > 0 ? args[0] : "pulsar://127.0.0.1:6650";
        String topic = args.length > 1 ? args[1] : "persistent://affiliate/platform/smoke";
        String payload = "smoke-" + System.currentTimeMillis();
        long t0 = System.nanoTime();
        try (PulsarClient client = PulsarClient.builder().serviceUrl(url)
                .operationTimeout(30, TimeUnit.SECONDS).build();
             Consumer<String> consumer = client.newConsumer(Schema.STRING).topic(topic)
                .subscriptionName("smoke").subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
                .subscribe();
             Producer<String> producer = client.newProducer(Schema.STRING).topic(topic).create()) {
            MessageId id = producer.send(payload);
            System.out.println("produced " + payload + " id=" + id);
            while (true) {
                Message<String> msg = consumer.receive(15, TimeUnit.SECONDS);
                if (msg == null) {
                    throw new IllegalStateException("no message received within 15 s");
                }
                consumer.acknowledge(msg);
                if (payload.equals(msg.getValue())) {
                    System.out.println("consumed " + msg.getValue() + " id=" + msg.getMessageId());
                    break;
                }
                System.out.println("skipped older message " + msg.getValue());
            }
        }
        System.out.printf("pulsar smoke OK in %d ms%n", (System.nanoTime() - t0) / 1_000_000);
    }
}
