// Publishes prediction events with Apache Kafka's own Java producer, one producer per
// compression codec, so tests see the record batches a production Java service writes.
//
// java -cp 'KAFKA_LIBS/*' CompressedProducer.java BOOTSTRAP TOPIC EVENTS_PER_CODEC CODEC...

import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class CompressedProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int perCodec = Integer.parseInt(args[2]);
        int i = 0;
        for (int c = 3; c < args.length; c++) {
            String codec = args[c];
            Properties props = new Properties();
            props.put("bootstrap.servers", bootstrap);
            props.put("compression.type", codec);
            props.put("linger.ms", "100");
            props.put("key.serializer", ByteArraySerializer.class.getName());
            props.put("value.serializer", ByteArraySerializer.class.getName());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
                for (int k = 0; k < perCodec; k++, i++) {
                    String value = String.format(
                        "{\"event_id\":\"e%d\",\"model\":\"m\",\"timestamp\":%d,"
                            + "\"features\":{\"x\":%d.5,\"codec\":\"%s\"},\"prediction\":0.5}",
                        i, 1700000000 + i, i % 13, codec);
                    producer.send(new ProducerRecord<>(topic, 0,
                        "m".getBytes(StandardCharsets.UTF_8),
                        value.getBytes(StandardCharsets.UTF_8)));
                }
                producer.flush();
            }
            System.out.println("sent " + perCodec + " " + codec);
        }
    }
}
