// Clears the ephemeral nodes that a broker killed without a clean shutdown left in its RocksDB
// metadata store. deploy/local/pulsar.sh runs it before every start, while no broker runs.
//
// Standalone Pulsar keeps its metadata in RocksDB, which has no sessions: an ephemeral node (the
// bookie's registration /ledgers/available/<bookie id>, the broker's /loadbalance/brokers/<id>)
// outlives a SIGKILLed owner, and RocksdbMetadataStore deletes the previous instance's ephemeral
// nodes when it is next opened. Inside the restarted broker that deletion races with the new
// bookie registering the same path: measured on Pulsar 4.0.7, the bookie's registration lock then
// deletes and re-creates its node thousands of times a second ("Lock on resource
// /ledgers/available/127.0.0.1:3181 was invalidated", over 10^6 log lines a minute) and ledger
// reads fail with "Bookie handle is not available". Opening and closing the store once here,
// before the broker starts, does that deletion with nobody racing it.
//
//   java -cp "$PULSAR_LIB_DIR/*" StaleEphemeralNodes.java <metadata-dir>

import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.metadata.api.MetadataStoreConfig;
import org.apache.pulsar.metadata.api.extended.MetadataStoreExtended;

public class StaleEphemeralNodes {
    public static void main(String[] args) throws Exception {
        String url = "rocksdb://" + args[0];
        try (MetadataStoreExtended store = MetadataStoreExtended.create(url, MetadataStoreConfig.builder().build())) {
            List<String> bookies = store.getChildren("/ledgers/available").get(30, TimeUnit.SECONDS);
            bookies.remove("readonly");
            if (!bookies.isEmpty()) {
                throw new IllegalStateException("bookie registrations still present after opening the store: " + bookies);
            }
        }
        System.out.println("metadata store " + args[0] + ": no registration of a previous broker left");
    }
}
