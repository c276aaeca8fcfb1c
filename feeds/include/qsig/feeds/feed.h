// Umbrella header: everything feeds offers. Product code includes the header of what it uses:
// feature_sink.h, feed_processor.h, udp_receiver.h, replay.h, feed_handler.h, simulator.h,
// sim_publisher.h, labelled_features.h (and features.h, feature_vector.h, clock.h).
#pragma once

#include "qsig/feeds/feature_sink.h"
#include "qsig/feeds/feed_handler.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/feeds/labelled_features.h"
#include "qsig/feeds/replay.h"
#include "qsig/feeds/sim_publisher.h"
#include "qsig/feeds/simulator.h"
#include "qsig/feeds/udp_receiver.h"
